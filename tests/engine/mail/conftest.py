"""Fixtures of the mail tests."""

from __future__ import annotations

import pytest

from tests.mailbox import Mailbox


@pytest.fixture
def mailbox():
    """A loopback SMTP server of the test's own (``tests.mailbox``)."""
    box = Mailbox()
    yield box
    box.close()
