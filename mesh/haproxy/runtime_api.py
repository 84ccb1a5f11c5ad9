"""HAProxy's runtime API: commands over its unix-socket CLI, their answers judged."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from mesh.errors import RuntimeApiError

# In interactive mode (`prompt`) each answer is followed by a prompt at the start of a
# line: `> ` on a stats socket, `master> ` on the master socket (`master[ReloadFailed]> `
# after a failed reload). The answers we ask for never hold lines beginning so.
_PROMPT = re.compile(r"^(?:master(?:\[\w+\])?)?> ", re.MULTILINE)
_READ_SIZE = 65536

# What HAProxy answers when a command of ours worked: changes answer a fixed sentence or
# nothing; anything else they answer is HAProxy saying why it did not.
_SUCCESS = {
    "add server": "New server registered.",
    "del server": "Server deleted.",
}
_SILENT = (
    "set server",
    "set weight",
    "enable server",
    "disable server",
    "enable health",
    "disable health",
    "shutdown sessions",
)
# ...except an address change, which says what changed, or that nothing had to.
_ADDRESS_SET = ("IP changed from", "no need to change the addr")
# Reading commands answer data, or one of these sentences when they cannot.
_READ_FAILURES = ("Unknown command", "No such ", "Can't find ", "Require ", "Permission denied")


def failure(command: str, answer: str) -> str | None:
    """None when `answer` means `command` worked, else the answer (HAProxy's reason)."""
    for prefix, expected in _SUCCESS.items():
        if command.startswith(prefix):
            return None if answer == expected else answer or "(no answer)"
    if command.startswith("set server") and " addr " in command:
        return None if answer.startswith(_ADDRESS_SET) else answer or "(no answer)"
    if command.startswith(_SILENT):
        return None if answer == "" else answer
    return answer if answer.startswith(_READ_FAILURES) else None


def check(commands: Sequence[str], answers: Sequence[str]) -> None:
    """RuntimeApiError naming the first failed command, its answer, and how many others failed."""
    failed = [
        (command, reason)
        for command, answer in zip(commands, answers, strict=True)
        if (reason := failure(command, answer)) is not None
    ]
    if failed:
        command, reason = failed[0]
        more = f" (and {len(failed) - 1} more commands failed)" if len(failed) > 1 else ""
        raise RuntimeApiError(f"haproxy refused {command!r}: {_one_line(reason)}{more}")


class RuntimeApi:
    """One HAProxy CLI socket (a stats socket, or the master's); each call opens a connection."""

    def __init__(self, path: str, *, timeout: float = 2.0) -> None:
        self.path = path
        self.timeout = timeout

    async def run(self, commands: Sequence[str]) -> list[str]:
        """Each command's answer (trailing newlines removed), sent as one batch on one
        connection; RuntimeApiError if the socket cannot be reached or answers too little
        in time. Answers are returned as they are: `apply` also judges them."""
        if not commands:
            return []
        if any("\n" in command or ";" in command for command in commands):
            raise RuntimeApiError("a runtime API command holds a newline or ';'")
        # `quit` makes HAProxy close once it has answered the rest: we read to the end.
        request = "prompt\n" + "".join(f"{command}\n" for command in commands) + "quit\n"
        text = await self._exchange(request.encode())
        # Before the first prompt: the answer to `prompt` itself; the rest, one per command
        # (the master also prompts after `quit`).
        pieces = _PROMPT.split(text)[1:]
        if len(pieces) < len(commands) + 1:
            raise RuntimeApiError(
                f"haproxy at {self.path} closed the connection after "
                f"{max(0, len(pieces) - 1)} of {len(commands)} answers"
            )
        return [piece.rstrip("\n") for piece in pieces[: len(commands)]]

    async def apply(self, commands: Sequence[str]) -> list[str]:
        """`run`, then RuntimeApiError if any command failed (every one was still tried:
        HAProxy goes on after a failed command)."""
        answers = await self.run(commands)
        check(commands, answers)
        return answers

    async def send(self, command: str) -> str:
        """One command in non-interactive mode, reading until HAProxy closes: for the
        master's `reload`, which closes every master connection as the master re-executes."""
        return (await self._exchange(f"{command}\n".encode())).rstrip("\n")

    async def _exchange(self, request: bytes) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(self.path)
                try:
                    writer.write(request)
                    await writer.drain()
                    chunks = []
                    while chunk := await reader.read(_READ_SIZE):
                        chunks.append(chunk)
                finally:
                    writer.close()
        except TimeoutError:
            raise RuntimeApiError(
                f"haproxy at {self.path} did not answer within {self.timeout:g} s"
            ) from None
        except OSError as error:
            reason = error.strerror or str(error)
            raise RuntimeApiError(f"cannot reach haproxy at {self.path}: {reason}") from None
        return b"".join(chunks).decode(errors="replace")


def _one_line(text: str) -> str:
    return " / ".join(line.strip() for line in text.splitlines() if line.strip())
