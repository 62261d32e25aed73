"""The small settings dialog: where the backend is (or how to start one) and where results go."""

from __future__ import annotations

import dataclasses

from qgis.gui import QgsFileWidget, QgsPasswordLineEdit
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
)

from .settings import SEND_MODES, PluginSettings


class SettingsDialog(QDialog):
    def __init__(self, settings: PluginSettings, parent=None):
        super().__init__(parent)
        self.setWindowTitle(self.tr("RS2-SAM 2 settings"))
        self._settings = settings
        layout = QVBoxLayout(self)

        remote = QGroupBox(self.tr("Backend server"), self)
        remote_form = QFormLayout(remote)
        self.url_edit = QLineEdit(settings.server_url, remote)
        self.url_edit.setToolTip(self.tr("URL of a running `rs2sam2 serve`, e.g. http://gpu-server:8765"))
        self.token_edit = QgsPasswordLineEdit(remote)
        self.token_edit.setText(settings.token)
        remote_form.addRow(self.tr("Server URL"), self.url_edit)
        remote_form.addRow(self.tr("Access token"), self.token_edit)
        layout.addWidget(remote)

        local = QGroupBox(self.tr("Start a local backend"), self)
        local.setCheckable(True)
        local.setChecked(settings.start_local)
        self.local_group = local
        local_form = QFormLayout(local)
        self.python_edit = QgsFileWidget(local)
        self.python_edit.setFilePath(settings.python_path)
        self.python_edit.setToolTip(
            self.tr("The Python of an environment where the rs2sam2 backend is installed")
        )
        self.workdir_edit = QgsFileWidget(local)
        self.workdir_edit.setStorageMode(QgsFileWidget.GetDirectory)
        self.workdir_edit.setFilePath(settings.working_dir)
        self.preset_edit = QLineEdit(settings.preset, local)
        self.preset_edit.setPlaceholderText(self.tr("the backend's default"))
        self.preset_edit.setToolTip(
            self.tr("A model preset (test, tiny, base, large); used when no checkpoint is set")
        )
        self.checkpoint_edit = QgsFileWidget(local)
        self.checkpoint_edit.setFilePath(settings.checkpoint)
        self.checkpoint_edit.setToolTip(
            self.tr("A trained checkpoint; when set it is used instead of the preset")
        )
        self.port_spin = QSpinBox(local)
        self.port_spin.setRange(0, 65535)
        self.port_spin.setSpecialValueText(self.tr("any free port"))
        self.port_spin.setValue(settings.local_port)
        local_form.addRow(self.tr("Python"), self.python_edit)
        local_form.addRow(self.tr("Working folder"), self.workdir_edit)
        local_form.addRow(self.tr("Preset"), self.preset_edit)
        local_form.addRow(self.tr("Checkpoint"), self.checkpoint_edit)
        self.allow_path_edit = QgsFileWidget(local)
        self.allow_path_edit.setStorageMode(QgsFileWidget.GetDirectory)
        self.allow_path_edit.setFilePath(settings.local_allow_path)
        self.allow_path_edit.setToolTip(
            self.tr(
                "The backend reads rasters by path under this folder; empty: " "rasters are always uploaded"
            )
        )
        local_form.addRow(self.tr("Port"), self.port_spin)
        local_form.addRow(self.tr("Readable folder"), self.allow_path_edit)
        layout.addWidget(local)

        output = QGroupBox(self.tr("Sending and results"), self)
        output_form = QFormLayout(output)
        self.send_combo = QComboBox(output)
        labels = {
            "auto": self.tr("File path when the backend can read it, else GeoTIFF"),
            "path": self.tr("Always the file path (shared file system)"),
            "upload": self.tr("Always a GeoTIFF of the area"),
        }
        for mode in SEND_MODES:
            self.send_combo.addItem(labels[mode], mode)
        self.send_combo.setCurrentIndex(max(0, self.send_combo.findData(settings.send_mode)))
        self.gpkg_edit = QgsFileWidget(output)
        self.gpkg_edit.setStorageMode(QgsFileWidget.SaveFile)
        self.gpkg_edit.setFilter("GeoPackage (*.gpkg)")
        self.gpkg_edit.setFilePath(settings.output_gpkg)
        self.gpkg_edit.setToolTip(
            self.tr(
                "Empty: a memory layer per phrase. Otherwise layers are appended to "
                "this GeoPackage (existing layers are never overwritten)."
            )
        )
        self.timeout_spin = QSpinBox(output)
        self.timeout_spin.setRange(5, 3600)
        self.timeout_spin.setSuffix(" s")
        self.timeout_spin.setValue(settings.request_timeout_s)
        output_form.addRow(self.tr("Send the raster as"), self.send_combo)
        output_form.addRow(self.tr("Results GeoPackage"), self.gpkg_edit)
        output_form.addRow(self.tr("Request timeout"), self.timeout_spin)
        layout.addWidget(output)

        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def tr(self, message: str) -> str:  # noqa: D401 - Qt naming
        return QCoreApplication.translate("SettingsDialog", message)

    def result_settings(self) -> PluginSettings:
        """The edited settings (a new object; the original is untouched until the caller saves)."""
        gpkg = self.gpkg_edit.filePath().strip()
        if gpkg and not gpkg.lower().endswith(".gpkg"):
            gpkg += ".gpkg"
        return dataclasses.replace(
            self._settings,
            server_url=self.url_edit.text().strip() or PluginSettings().server_url,
            token=self.token_edit.text().strip(),
            start_local=self.local_group.isChecked(),
            python_path=self.python_edit.filePath().strip() or PluginSettings().python_path,
            working_dir=self.workdir_edit.filePath().strip(),
            preset=self.preset_edit.text().strip(),
            checkpoint=self.checkpoint_edit.filePath().strip(),
            local_port=self.port_spin.value(),
            local_allow_path=self.allow_path_edit.filePath().strip(),
            send_mode=self.send_combo.currentData(),
            output_gpkg=gpkg,
            request_timeout_s=self.timeout_spin.value(),
            phrase_history=list(self._settings.phrase_history),
        )
