"""The keys that sign agent commands and answers: one per VM, derived from a master secret.

    key(VM) = HMAC-SHA256(master, "quiesce-agent-key/v1\\n" + "projects/P/zones/Z/instances/NAME")

The master secret (32 bytes or more, hexadecimal) stays with the orchestrator: the Cloud Functions
read it from Secret Manager (infra/gcp passes it as QUIESCE_AGENT_MASTER_KEY), the command line
from a file only its user can read (QUIESCE_AGENT_MASTER_KEY_FILE). Each VM gets only its own
derived key, installed by the OS policy (scripts/gcp_os_policy.py) as a root-only file, so a key
read on one VM neither signs nor verifies anything for another. The formats of what is signed are
the agent's own (quiesce_gcp/quiesce_agent.py), imported from it so both sides stay equal.

A restored copy (quiesce_gcp.restorer: a new VM with a new name, booted from disks restored from
a machine's snapshots) has no key of its own: the master never leaves the orchestrator, so
nothing on the copy could derive one, and no OS policy reaches it (it carries none of the
labels assignments select on). It boots with the key file on its restored boot disk: the key of
the machine it was restored from. The restorer records that machine's path in the copy's
Machine attributes (`key_of`), and the hook runner signs commands to the copy and verifies its
answers with that key; each command still names the copy, so it is refused by the original (and
the original's by the copy). No key is created, sent or stored for a copy.
"""

from __future__ import annotations

import binascii
import errno
import hashlib
import hmac
import os
import stat
from collections.abc import Mapping

from quiesce.errors import ProviderError
from quiesce_gcp.quiesce_agent import answer_signature, command_signature

MASTER_KEY_ENV = "QUIESCE_AGENT_MASTER_KEY"
MASTER_KEY_FILE_ENV = "QUIESCE_AGENT_MASTER_KEY_FILE"
DERIVATION_CONTEXT = b"quiesce-agent-key/v1\n"
MIN_KEY_BYTES = 32
#: The Machine attribute naming whose key a restored copy boots with (projects/P/zones/Z/
#: instances/NAME of the machine it was restored from).
KEY_OF = "key_of"


def instance_path(project: str, zone: str, name: str) -> str:
    return f"projects/{project}/zones/{zone}/instances/{name}"


def _parse_hex(text: str, source: str) -> bytes:
    try:
        key = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise ProviderError(
            f"{source}: the agent master key must be at least {MIN_KEY_BYTES} bytes written "
            "as hexadecimal digits (create one with: openssl rand -hex 32)",
            code="BadSigningKey",
        )
    return key


def read_key_file(path: str) -> str:
    """A secret file's text, opened with O_NOFOLLOW and checked on the descriptor: a regular
    file owned by this user (or root) that nobody else can read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        reason = "is a symlink" if exc.errno == errno.ELOOP else exc.strerror
        raise ProviderError(
            f"{path}: cannot open the key file ({reason})", code="BadSigningKey"
        ) from None
    try:
        st = os.fstat(fd)
        mode = stat.S_IMODE(st.st_mode)
        if not stat.S_ISREG(st.st_mode):
            raise ProviderError(f"{path}: the key file is not a regular file", code="BadSigningKey")
        if st.st_uid not in (0, os.geteuid()):
            raise ProviderError(
                f"{path}: the key file is owned by uid {st.st_uid}, not by this user",
                code="BadSigningKey",
            )
        if mode & 0o077:
            raise ProviderError(
                f"{path}: the key file is open to others (mode {mode:04o}): chmod 600 {path}",
                code="BadSigningKey",
            )
        return os.read(fd, 4096).decode("ascii", "replace")
    finally:
        os.close(fd)


class AgentKeys:
    """Derives each VM's key from the master secret; signs commands, verifies answers."""

    def __init__(self, master: bytes) -> None:
        if len(master) < MIN_KEY_BYTES:
            raise ProviderError(
                f"the agent master key must be at least {MIN_KEY_BYTES} bytes",
                code="BadSigningKey",
            )
        self._master = master

    @classmethod
    def from_hex(cls, text: str, source: str = MASTER_KEY_ENV) -> AgentKeys:
        return cls(_parse_hex(text, source))

    @classmethod
    def from_file(cls, path: str) -> AgentKeys:
        return cls(_parse_hex(read_key_file(path), path))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgentKeys | None:
        """From QUIESCE_AGENT_MASTER_KEY (hex) or QUIESCE_AGENT_MASTER_KEY_FILE; None when
        neither is set (agent hooks then fail with NoSigningKey)."""
        if env.get(MASTER_KEY_ENV):
            return cls.from_hex(env[MASTER_KEY_ENV])
        if env.get(MASTER_KEY_FILE_ENV):
            return cls.from_file(env[MASTER_KEY_FILE_ENV])
        return None

    def for_instance(self, instance: str) -> bytes:
        """The VM's own key (what its OS policy installs), for projects/P/zones/Z/instances/N."""
        return hmac.new(
            self._master, DERIVATION_CONTEXT + instance.encode("utf-8"), hashlib.sha256
        ).digest()

    def sign_command(self, instance: str, command: str) -> str:
        return command_signature(self.for_instance(instance), command)

    def answer_is_signed(
        self, instance: str, nonce: str, key_name: str, result: str, signature: object
    ) -> bool:
        """True when `signature` is the VM's HMAC of the answer (compared in constant time)."""
        if not isinstance(signature, str):
            return False
        expected = answer_signature(self.for_instance(instance), nonce, key_name, result)
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))

    def __repr__(self) -> str:
        return "AgentKeys(<master key hidden>)"
