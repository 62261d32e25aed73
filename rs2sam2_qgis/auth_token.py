"""The remote backend's access token, kept in QGIS's authentication database (encrypted with the user's
master password), never in QgsSettings. The plugin's settings hold only the id of the auth config.

The config uses QGIS's "EsriToken" method because its editor is one "Token" field (the plugin reads the
value and sends it as a bearer token; a "Basic" config's password is read as well, for configs a person
made by hand). The local backend's token is made fresh per start and stays in memory.
"""

from __future__ import annotations

from qgis.core import QgsApplication, QgsAuthMethodConfig

TOKEN_METHOD = "EsriToken"
CONFIG_NAME = "RS2-SAM 2 backend token"


class AuthError(Exception):
    """The authentication database could not be used; the message is one sentence for a person."""


def _manager():
    manager = QgsApplication.authManager()
    if manager is None or manager.isDisabled():
        raise AuthError(
            "QGIS's authentication database is not available, so the access token cannot be stored."
        )
    return manager


def read_token(config_id: str) -> str:
    """The token of auth config `config_id` ("" when no config is set)."""
    if not config_id:
        return ""
    manager = _manager()
    config = QgsAuthMethodConfig()
    loaded = manager.loadAuthenticationConfig(config_id, config, True)
    if isinstance(loaded, tuple):  # the Python bindings of some QGIS versions return (ok, config)
        loaded, config = loaded
    if not loaded or not config.isValid(True):
        raise AuthError(
            f"The access token (auth config {config_id}) could not be read from QGIS's authentication "
            "database; check the master password or choose the config again in the RS2-SAM 2 settings."
        )
    return (config.config("token") or config.config("password") or "").strip()


def store_token(token: str, config_id: str = "") -> str:
    """Put `token` into auth config `config_id` (a new one when empty or gone); returns the config id."""
    manager = _manager()
    config = QgsAuthMethodConfig(TOKEN_METHOD)
    existing = config_id and config_id in manager.configIds()
    if existing:
        loaded = manager.loadAuthenticationConfig(config_id, config, True)
        if isinstance(loaded, tuple):
            loaded, config = loaded
        if loaded and config.method() not in (TOKEN_METHOD, "Basic"):
            raise AuthError(f"Auth config {config_id} is not a token or password config.")
    if not config.name():
        config.setName(CONFIG_NAME)
    if config.method() == "Basic":
        config.setConfig("password", token)
    else:
        config.setMethod(TOKEN_METHOD)
        config.setConfig("token", token)
    if existing:
        stored = manager.updateAuthenticationConfig(config)
    else:
        stored = manager.storeAuthenticationConfig(config)
    if isinstance(stored, tuple):
        stored, config = stored
    if not stored or not config.id():
        raise AuthError(
            "The access token could not be stored in QGIS's authentication database (is its master "
            "password set?)."
        )
    return config.id()
