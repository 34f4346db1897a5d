"""What a provd server and its clients agree on, in one neutral module.

Header names, default addresses, size limits and the error codes a failed job
carries. Both sides import it; it imports only the standard library,
so a client that reads a limit or an error code never loads the server, and
`provd.model` can use it too. See docs/daemon-protocol.md.
"""

from __future__ import annotations

from enum import StrEnum

# -- where the server is -----------------------------------------------------------

DEFAULT_LISTEN = "127.0.0.1:8420"
DEFAULT_URL = "http://127.0.0.1:8420"

# -- headers a provisioner daemon sends on every call (docs/daemon-protocol.md) ----

PSK_HEADER = "provd-daemon-psk"
# A daemon key (docs/keys.md) instead of the PSK: it fixes the daemon's organization,
# tags, owner and allowed provisioners.
KEY_HEADER = "provd-daemon-key"
NAME_HEADER = "provd-daemon-name"
PROVISIONERS_HEADER = "provd-daemon-provisioners"
TAGS_HEADER = "provd-daemon-tags"
ORGANIZATION_HEADER = "provd-daemon-organization"
API_VERSION_HEADER = "provd-api-version"
VERSION_HEADER = "provd-daemon-version"

# What every daemon key looks like: KEY_PREFIX, the key's id (no "_"), "_", the secret.
KEY_PREFIX = "provd_key_"

# -- limits ---------------------------------------------------------------------------

MiB = 1024 * 1024
# The largest message a daemon accepts: one AcquiredJob (archive and inputs together).
PAYLOAD_MAX_BYTES = 4 * MiB
# Each job's budget of log output, in UTF-8 bytes of stage and output; past it lines
# are dropped and one marker line says so.
LOG_BUDGET_BYTES = 1 * MiB
# Longer log stages and outputs are cut, with TRUNCATED_MARK at the end.
LOG_STAGE_MAX_CHARS = 128
LOG_OUTPUT_MAX_CHARS = 1024
TRUNCATED_MARK = " …[truncated]"
# The range of the protocol's int32 fields (costs, budgets, allowances).
INT32_MAX = 2**31 - 1
# The largest template archive UploadFile takes (and its unpacked size).
UPLOAD_MAX_BYTES = 100 * MiB


class JobErrorCode(StrEnum):
    """The `error_code` of a failed job, for programs to act on (never match the text)."""

    # The build needs values for required template variables (UpdateJob says which).
    REQUIRED_TEMPLATE_VARIABLES = "REQUIRED_TEMPLATE_VARIABLES"
    # The job's AcquiredJob would exceed PAYLOAD_MAX_BYTES.
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    # The job's template archive is no longer stored.
    FILE_MISSING = "FILE_MISSING"
    # The daemon running it sent no update for the hang timeout.
    JOB_HUNG = "JOB_HUNG"
    # No connected daemon could take it for the pending timeout.
    NO_CAPABLE_DAEMON = "NO_CAPABLE_DAEMON"
