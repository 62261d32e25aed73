"""Which backend a Processing algorithm talks to, shared by every algorithm of the provider: the
BACKEND_URL parameter, else the backend this QGIS process shares (`connection.backend`: the local one
running here, the server in the plugin's settings, or the local one started for the run)."""

from __future__ import annotations

from qgis.core import QgsProcessingException, QgsProcessingParameterString
from qgis.PyQt.QtCore import QCoreApplication

from ..connection.backend import BackendChoiceError, remote_token, shared_backend
from ..connection.client import BackendClient
from ..settings import PluginSettings

BACKEND_URL = "BACKEND_URL"


def tr(message: str) -> str:
    return QCoreApplication.translate("BackendChoice", message)


def backend_url_parameter() -> QgsProcessingParameterString:
    """The advanced, optional BACKEND_URL parameter."""
    url = QgsProcessingParameterString(
        BACKEND_URL, tr("Backend URL (default: from the plugin settings)"), optional=True
    )
    url.setFlags(url.flags() | QgsProcessingParameterString.FlagAdvanced)
    return url


def backend_client(algorithm, parameters, context, feedback) -> tuple[BackendClient, PluginSettings]:
    """The client of the chosen backend, and the plugin's settings; QgsProcessingException (one
    sentence) when none can be had."""
    settings = PluginSettings.load()
    given_url = algorithm.parameterAsString(parameters, BACKEND_URL, context).strip()
    try:
        if given_url:
            url, token = given_url, remote_token(settings)
        else:
            chosen = shared_backend().resolve(settings, feedback.isCanceled, feedback.pushInfo)
            url, token = chosen.url, chosen.token
    except BackendChoiceError as exc:
        first, _, details = str(exc).partition("\n")
        if details:
            feedback.reportError(details)
        raise QgsProcessingException(first) from None
    return BackendClient(url, token, timeout_s=settings.request_timeout_s), settings
