"""Edit requests: (prompt, subject, target), validated on construction.

>>> r = EditRequest("The mother tongue of Danielle Darrieux is", "Danielle Darrieux", "English")
>>> r.prompt
'The mother tongue of {} is'
>>> r.text
'The mother tongue of Danielle Darrieux is'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kedit.errors import EditError


class EditRequestError(EditError, ValueError):
    """An edit request is malformed (caught as EditError or ValueError)."""


@dataclass(frozen=True)
class EditRequest:
    """One fact to write: `prompt` (with `{}` where the subject goes) continued by `target`.

    A prompt without `{}` must contain the subject literally; its last occurrence becomes `{}`.
    """

    prompt: str
    subject: str
    target: str

    def __post_init__(self) -> None:
        subject = (self.subject or "").strip()
        target = (self.target or "").strip()
        prompt = (self.prompt or "").strip()
        if not subject:
            raise EditRequestError("edit request has an empty subject")
        if not target:
            raise EditRequestError(f"edit request for '{subject}' has an empty target")
        if not prompt:
            raise EditRequestError(f"edit request for '{subject}' has an empty prompt")
        n_slots = prompt.count("{}")
        if n_slots > 1:
            raise EditRequestError(
                f"prompt '{prompt}' has {n_slots} '{{}}' placeholders; it needs exactly one"
            )
        if n_slots == 0:
            at = prompt.rfind(subject)
            if at < 0:
                raise EditRequestError(
                    f"subject '{subject}' is not in the prompt '{prompt}' and the prompt has no '{{}}' placeholder"
                )
            prompt = prompt[:at] + "{}" + prompt[at + len(subject) :]
        object.__setattr__(self, "prompt", prompt)
        object.__setattr__(self, "subject", subject)
        object.__setattr__(self, "target", target)

    @property
    def text(self) -> str:
        """The prompt with the subject filled in (str.replace: other braces stay literal)."""
        return self.prompt.replace("{}", self.subject)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditRequest:
        return cls(data["prompt"], data["subject"], data["target"])
