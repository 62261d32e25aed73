"""The one door from the backend into the plugin's package.

The plugin and the service share one contract (`rs2sam2_qgis/contract.py`, standard library only):
every option a person can set, the HTTP API's wire types, the service's address defaults. Both sides
must agree on them, so they are stated once, in the plugin's package (the plugin cannot import the
backend; the backend can import one dependency-free module of the plugin's).

Everything in backend/, training/ and bench/ imports those names from here, never from
`rs2sam2_qgis` directly (tests/test_architecture.py holds it): one place where the backend crosses
into the plugin's package, and one list of what it takes from there.
"""

from __future__ import annotations

from rs2sam2_qgis.contract import (
    API_PREFIX,
    AREA_FIELDS,
    AREA_TOO_LARGE,
    CLI,
    DEFAULT_HOST,
    DEFAULT_PORT,
    FINAL_JOB_STATES,
    MAX_CONTEXT_SHRINK,
    PRECISIONS,
    SERVICE,
    TOKEN_ENV,
    ErrorBody,
    ErrorDetail,
    Health,
    JobCreated,
    JobStatus,
    ModelInfo,
    Option,
    Progress,
    is_loopback_host,
    option_problems,
    option_values,
    options_class,
    options_on,
    params_help,
    resolve_defaults,
)

__all__ = [
    "API_PREFIX",
    "AREA_FIELDS",
    "AREA_TOO_LARGE",
    "CLI",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "FINAL_JOB_STATES",
    "MAX_CONTEXT_SHRINK",
    "PRECISIONS",
    "SERVICE",
    "TOKEN_ENV",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "JobCreated",
    "JobStatus",
    "ModelInfo",
    "Option",
    "Progress",
    "is_loopback_host",
    "option_problems",
    "option_values",
    "options_class",
    "options_on",
    "params_help",
    "resolve_defaults",
]
