"""Client self-configuration over HTTP: Thunderbird autoconfig, Outlook autodiscover, Apple profiles."""
