"""Per-job NATS credentials: each job's users may use only that job's subjects.

A nats-server that faasopt configures (``NatsServer(users=...)``) gets two users per job: the
coordinator's and the workers'. The workers' user may publish only results and heartbeats and
subscribe only to the job's control subjects, so a worker (or whoever holds its credentials)
cannot read, forge or disturb another job's messages: the server refuses it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from faasopt.protocol import Subjects

INBOX = "_INBOX.>"
"""Reply subjects nats.py uses for requests (JetStream calls)."""


@dataclass(frozen=True)
class NatsUser:
    """One NATS user with what it may publish and subscribe to; the password never prints."""

    user: str
    password: str = field(repr=False)
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def config(self) -> dict[str, Any]:
        """This user in nats-server's configuration (JSON is valid NATS config)."""
        return {
            "user": self.user,
            "password": self.password,
            "permissions": {
                "publish": {"allow": list(self.publish)},
                "subscribe": {"allow": list(self.subscribe)},
            },
        }


@dataclass(frozen=True)
class JobCredentials:
    """The two users of one job."""

    coordinator: NatsUser
    worker: NatsUser


def job_credentials(subjects: Subjects) -> JobCredentials:
    """Fresh random credentials for the job of ``subjects``.

    The coordinator also gets the JetStream API for its checkpoints; note that JetStream's API
    subjects are shared by all users of an account, so checkpoint isolation between jobs rests
    on their keys, not on these permissions.
    """
    name = f"{subjects.namespace}.{subjects.job}"
    return JobCredentials(
        coordinator=NatsUser(
            user=f"{name}.coordinator",
            password=secrets.token_urlsafe(24),
            publish=(subjects.ctl, f"{subjects.ctl}.>", "$JS.API.>", "$O.>", INBOX),
            subscribe=(subjects.up, subjects.hb, INBOX),
        ),
        worker=NatsUser(
            user=f"{name}.worker",
            password=secrets.token_urlsafe(24),
            publish=(subjects.up, subjects.hb),
            subscribe=(subjects.ctl, f"{subjects.ctl}.>"),
        ),
    )
