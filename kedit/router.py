"""The router: for every update, decide where the knowledge goes, from signals it can explain.

Routes:
- PARAMETRIC: edit the weights only (only when the caller forces it: every routed weight edit is also
  recorded, so answers carry evidence and the edit can be found, undone or forgotten);
- STORE: record only (time-bounded or volatile facts, multi-valued relations, facts the model already
  states, an exhausted edit budget or drifted locality probes, a model that cannot be edited, an edit
  that did not verify);
- BOTH: edit the weights so closed-book answers agree, and record the fact so answers carry evidence and
  multi-hop chains can use it (a prompt with no recognised relation is recorded as a passage);
- REMOVE: forget (delete from every store; unlearn from the weights if the model still states it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

# Relations whose value changes with elections, appointments and transfers: a record is cheap to change
# and keeps the history, a weight edit would have to be redone each time.
VOLATILE_RELATIONS: frozenset[str] = frozenset(
    {
        "P6",  # head of government
        "P35",  # head of state
        "P169",  # chief executive officer
        "P286",  # head coach
        "P488",  # chairperson
        "P1037",  # director / manager
        "P1308",  # officeholder
    }
)


class Route(str, Enum):
    PARAMETRIC = "parametric"
    STORE = "store"
    BOTH = "both"
    REMOVE = "remove"

    @classmethod
    def parse(cls, value: str | Route) -> Route:
        try:
            return cls(value.value if isinstance(value, Route) else str(value).lower())
        except ValueError:
            raise ValueError(
                f"unknown route {value!r}: expected one of {', '.join(r.value for r in cls)}"
            ) from None


@dataclass(frozen=True)
class RouterSignals:
    """What the router knows about one update; every field is measured or read, never guessed."""

    relation: str | None = None  # relation id when the update names or matches one
    functional: bool | None = None  # one object per subject at a time (None: unknown relation)
    time_bounded: bool = False  # valid_from / valid_to given
    volatile: bool = False  # the relation or source marks the fact as changing often
    editable: bool = True  # the model's architecture has an ArchSpec
    editable_reason: str = ""
    already_states_target: bool = False  # probe: the target is already the model's top prediction
    target_prob_before: float | None = None
    current_answer: str | None = None  # the model's greedy answer before the update
    live_edits: int = 0
    edit_budget: int = 64
    locality_drift: float = 0.0  # share of locality-probe tokens changed since the layer was opened
    drift_budget: float = 0.15


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    reasons: tuple[str, ...]
    signals: RouterSignals = field(default_factory=RouterSignals)
    forced: bool = False

    def to_dict(self) -> dict:
        return {
            "route": self.route.value,
            "reasons": list(self.reasons),
            "forced": self.forced,
            "signals": asdict(self.signals),
        }


@dataclass(frozen=True)
class Router:
    """Decide a route per update.

    >>> Router().decide(RouterSignals(relation="P103", functional=True, current_answer="French")).route
    <Route.BOTH: 'both'>
    >>> Router().decide(RouterSignals(relation="P103", functional=True, time_bounded=True)).route
    <Route.STORE: 'store'>
    """

    def decide(self, s: RouterSignals, route: Route | str | None = None) -> RouteDecision:
        if route is not None:
            forced = Route.parse(route)
            if forced in (Route.PARAMETRIC, Route.BOTH) and not s.editable:
                return RouteDecision(
                    Route.STORE,
                    (
                        f"route={forced.value} requested but the model cannot be edited ({s.editable_reason}); stored instead",
                    ),
                    s,
                    forced=True,
                )
            return RouteDecision(forced, (f"route={forced.value} requested by the caller",), s, forced=True)
        if not s.editable:
            return RouteDecision(Route.STORE, (f"the model cannot be edited: {s.editable_reason}",), s)
        if s.time_bounded:
            return RouteDecision(
                Route.STORE, ("the fact is valid only for a time span; weights cannot hold time validity",), s
            )
        if s.volatile:
            why = (
                f"relation {s.relation} is volatile (office-holders change)"
                if s.relation in VOLATILE_RELATIONS
                else "the caller marked the fact volatile"
            )
            return RouteDecision(
                Route.STORE, (f"{why}: a record is cheap to change and keeps the history",), s
            )
        if s.relation is not None and s.functional is False:
            return RouteDecision(
                Route.STORE,
                (f"relation {s.relation} is multi-valued: a weight edit would overwrite its other values",),
                s,
            )
        if s.already_states_target:
            return RouteDecision(
                Route.STORE, ("the model already states this target; recorded for provenance only",), s
            )
        if s.live_edits >= s.edit_budget:
            return RouteDecision(
                Route.STORE,
                (f"edit budget exhausted: {s.live_edits} live parametric edits ≥ {s.edit_budget}",),
                s,
            )
        if s.locality_drift >= s.drift_budget:
            return RouteDecision(
                Route.STORE,
                (
                    f"locality probes drifted {s.locality_drift:.1%} ≥ budget {s.drift_budget:.0%}; no more weight edits",
                ),
                s,
            )
        now = (
            f"the model now answers {s.current_answer!r}"
            if s.current_answer is not None
            else "the model does not state it"
        )
        if s.relation is None:
            return RouteDecision(
                Route.BOTH,
                (
                    now,
                    f"{s.live_edits} < {s.edit_budget} edits are live",
                    "no relation recognised: edit the weights, and keep the statement as a passage for evidence",
                ),
                s,
            )
        return RouteDecision(
            Route.BOTH,
            (
                now,
                f"relation {s.relation} is functional and {s.live_edits} < {s.edit_budget} edits are live",
                "edit the weights for closed-book answers and record the fact for evidence and multi-hop",
            ),
            s,
        )

    @staticmethod
    def fallback_after_failed_edit(decision: RouteDecision, why: str) -> RouteDecision:
        """A parametric edit that did not verify is undone and the fact goes to the store."""
        return RouteDecision(
            Route.STORE,
            (*decision.reasons, f"the weight edit did not verify ({why}): undone, stored instead"),
            decision.signals,
            decision.forced,
        )
