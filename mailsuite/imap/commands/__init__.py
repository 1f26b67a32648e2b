"""The IMAP command handlers, one module per command family; `table` maps every command name
to its handler, states and capability.  Importing this package registers nothing."""
