"""Numbers in a remote's settings: what a user writes in .mlops/config.yaml is checked once, here."""

from __future__ import annotations

import pytest

from mlops.errors import ConfigError, one_line
from mlops.remotes.settings import number_setting


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", 0, -3, "soon", True])
def test_a_timeout_that_is_not_a_finite_number_above_zero_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="'timeout' must be a number above 0"):
        number_setting("storage", {"timeout": value}, "timeout", 30.0)


def test_finite_numbers_and_the_default_pass() -> None:
    assert number_setting("storage", {"timeout": "2.5"}, "timeout", 30.0) == 2.5
    assert number_setting("storage", {}, "timeout", 30.0) == 30.0
    assert number_setting("storage", {"jobs": "8"}, "jobs", 4, integer=True) == 8


def test_one_line_of_an_exception_whose_message_cannot_be_read() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no message")

    assert one_line(Unprintable()) == "Unprintable (its message could not be read)"
    assert one_line(ValueError("a\n  b")) == "a b"
