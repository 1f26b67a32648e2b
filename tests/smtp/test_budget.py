"""BodyBudget (mailsuite/smtp/budget.py): what sessions hold, bounded in total and per address."""

from mailsuite.config import config_from_dict
from mailsuite.smtp.budget import BodyBudget


def test_share_and_total_bound_growth_and_refused_growth_changes_nothing():
    budget = BodyBudget(total=100, per_ip=60)
    a, b = budget.charge("192.0.2.1"), budget.charge("192.0.2.1")
    assert a.hold(40)
    assert not b.hold(21)  # 61 > the address's 60
    assert (budget.held, budget.held_by("192.0.2.1"), b.held) == (40, 40, 0)
    assert b.hold(20)  # exactly the share: full, not past
    assert not budget.has_room("192.0.2.1")
    user = budget.charge(None)  # logged in: the total only
    assert user.hold(40)
    assert not user.hold(41)
    assert budget.has_room("192.0.2.9", 0) and not budget.has_room("192.0.2.9")


def test_shrinking_always_fits_and_release_returns_everything():
    budget = BodyBudget(total=10, per_ip=10)
    c = budget.charge("2001:db8::1")
    assert c.hold(10)
    assert c.hold(3)
    assert budget.held == 3
    c.release()
    c.release()
    assert (budget.held, budget.held_by("2001:db8::1")) == (0, 0)


def test_bounds_are_never_below_one_message_of_the_largest_size(tmp_path):
    def budget(**limits):
        raw = {"data_dir": str(tmp_path), "smtp": {"max_message_size": 1000}, "limits": limits}
        b = BodyBudget.from_config(config_from_dict(raw, base=tmp_path))
        return b.total, b.per_ip

    assert budget() == (256 * 1024 * 1024, 2000)
    assert budget(message_memory=500, message_memory_per_ip=10) == (1000, 1000)
    assert budget(message_memory=5000, message_memory_per_ip=1500) == (5000, 1500)
