"""Why a heal did not happen, as data: one kind per reason, declared here only.

Every failure pgheal records (``heal.build_events.reason_kind``,
``heal.error_fingerprints.reason_kind``) carries one of these kinds next to its
sentence; the installer writes them into ``heal.reason_kinds``, which the views join.
A view never matches English text to find out why.
"""

from __future__ import annotations

#: The policy does not allow it: a setting, the role's own rights, an untrusted schema.
REFUSED = "refused"
#: What provides it is not installed on the database host (an OS package is named).
UNAVAILABLE = "unavailable"
#: pgheal knows no fix for it.
NO_FIX = "no_fix"
#: The fix itself raised an error.
FIX_FAILED = "fix_failed"
#: The fixes ran, and the statement still failed (retries or max_attempts exhausted).
NOT_HELPED = "not_helped"
#: The scan's fix did not stop the error: it came back from sessions begun after it.
INEFFECTIVE = "ineffective"
#: Nothing here fixes it; the learning network knows a fix, and network_patterns = suggest.
NETWORK_SUGGESTED = "network_suggested"
#: The scan has seen the error fewer times than min_occurrences.
WAITING = "waiting"

#: kind: (label, description), in the order the views list them.
KINDS: dict[str, tuple[str, str]] = {
    REFUSED: ("refused by policy",
              "heal.settings or the role's own rights do not allow the fix; the reason names "
              "the setting, or the grant, that would"),
    UNAVAILABLE: ("not available on the host",
                  "the extension that provides it is not installed on the database host; the "
                  "reason names its OS package"),
    NO_FIX: ("no known fix", "pgheal knows nothing that provides what is missing"),
    FIX_FAILED: ("fix failed", "the fix pgheal planned raised an error of its own"),
    NOT_HELPED: ("fix did not help",
                 "the fixes ran and the statement still failed with the same error"),
    INEFFECTIVE: ("fix ineffective",
                  "the scan's fix did not stop the error: sessions that began after it "
                  "still hit it"),
    NETWORK_SUGGESTED: ("network suggests a fix",
                        "no fix is known here; the learning network knows one, and heal.settings "
                        "network_patterns = suggest names it instead of applying it"),
    WAITING: ("waiting", "seen fewer times than heal.settings min_occurrences: the scan "
              "heals it once it has"),
}  # fmt: skip
