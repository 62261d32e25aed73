"""QGIS's authentication database in headless tests.

The plugin keeps the server's token in QGIS's auth database, which is encrypted with a master password
that QGIS asks a person for. Headless there is nobody to ask: the tests set one for pytest-qgis's own
profile (`.qgis-settings/`, never a user's), verified against the hash stored there by earlier runs.
"""

from __future__ import annotations

import pytest

TEST_MASTER_PASSWORD = "rs2sam2-tests-only"


@pytest.fixture(autouse=True, scope="session")
def qgis_auth_master_password(qgis_app):
    from qgis.core import QgsApplication

    manager = QgsApplication.authManager()
    if not manager.isDisabled() and not manager.masterPasswordIsSet():
        assert manager.setMasterPassword(TEST_MASTER_PASSWORD, True), "the test master password was refused"
    yield manager
