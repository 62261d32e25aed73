"""The settings dialog, in three tabs: where the backend is (a server, with its token in QGIS's
authentication database, or the local one) and where results go; the local backend's set-up (folder,
Python, torch build, offline wheel folder, Repair / reinstall); and the model manager."""

from __future__ import annotations

import dataclasses

from qgis.gui import QgsAuthConfigSelect, QgsFileWidget, QgsPasswordLineEdit
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..contract import PRECISIONS
from ..settings import SEND_MODES, PluginSettings, default_setup_folder, legacy_token
from ..setup.torch_build import BUILDS
from .model_manager import ModelManager
from .setup_controller import env_status


def tr(message: str) -> str:
    return QCoreApplication.translate("SettingsDialog", message)


class SettingsDialog(QDialog):
    def __init__(self, settings: PluginSettings, parent=None):
        super().__init__(parent)
        self.setWindowTitle(tr("RS2-SAM 2 settings"))
        self._settings = settings
        self.repair_requested = False  # "Repair / reinstall" closes the dialog; the panel runs the set-up
        layout = QVBoxLayout(self)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self._backend_tab(settings), tr("Backend"))
        self.tabs.addTab(self._setup_tab(settings), tr("Local set-up"))
        self.model_manager = ModelManager(settings, self)
        self.tabs.addTab(self.model_manager, tr("Models"))
        layout.addWidget(self.tabs)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.finished.connect(lambda _result: self.model_manager.shutdown())

    # -- tabs ------------------------------------------------------------------------------------
    def _backend_tab(self, settings: PluginSettings) -> QWidget:
        tab = QWidget(self)
        layout = QVBoxLayout(tab)
        remote = QGroupBox(tr("Backend server"), tab)
        remote_form = QFormLayout(remote)
        self.url_edit = QLineEdit(settings.server_url, remote)
        self.url_edit.setToolTip(tr("URL of a running `rs2sam2 serve`, e.g. http://gpu-server:8765"))
        self.auth_select = QgsAuthConfigSelect(remote)
        self.auth_select.setConfigId(settings.auth_config)
        self.token_edit = QgsPasswordLineEdit(remote)
        self.token_edit.setText(legacy_token() if not settings.auth_config else "")
        self.token_edit.setPlaceholderText(
            tr("kept in the auth config above") if settings.auth_config else tr("the server's --token")
        )
        self.token_edit.setToolTip(
            tr("A new token goes into QGIS's authentication database (the auth config above)")
        )
        remote_form.addRow(tr("Server URL"), self.url_edit)
        remote_form.addRow(tr("Token stored in"), self.auth_select)
        remote_form.addRow(tr("New access token"), self.token_edit)
        layout.addWidget(remote)

        local = QGroupBox(tr("Start a local backend"), tab)
        local.setCheckable(True)
        local.setChecked(settings.start_local)
        self.local_group = local
        local_form = QFormLayout(local)
        self.python_edit = QgsFileWidget(local)
        self.python_edit.setFilePath(settings.python_path)
        self.python_edit.lineEdit().setPlaceholderText(tr("the environment of the set-up (Local set-up tab)"))
        self.python_edit.setToolTip(
            tr("The Python of another environment where the rs2sam2 backend is installed")
        )
        self.workdir_edit = QgsFileWidget(local)
        self.workdir_edit.setStorageMode(QgsFileWidget.GetDirectory)
        self.workdir_edit.setFilePath(settings.working_dir)
        self.port_spin = QSpinBox(local)
        self.port_spin.setRange(0, 65535)
        self.port_spin.setSpecialValueText(tr("any free port"))
        self.port_spin.setValue(settings.local_port)
        self.allow_path_edit = QgsFileWidget(local)
        self.allow_path_edit.setStorageMode(QgsFileWidget.GetDirectory)
        self.allow_path_edit.setFilePath(settings.local_allow_path)
        self.allow_path_edit.setToolTip(
            tr("The backend reads rasters by path under this folder; empty: rasters are always uploaded")
        )
        local_form.addRow(tr("Python"), self.python_edit)
        local_form.addRow(tr("Working folder"), self.workdir_edit)
        local_form.addRow(tr("Port"), self.port_spin)
        local_form.addRow(tr("Readable folder"), self.allow_path_edit)
        self._add_speed_rows(settings, local, local_form)
        layout.addWidget(local)
        self.allow_local_check = QCheckBox(
            tr("Processing may start the local backend when no backend answers"), tab
        )
        self.allow_local_check.setChecked(settings.allow_local)
        layout.addWidget(self.allow_local_check)
        layout.addWidget(self._output_group(settings, tab))
        return tab

    def _add_speed_rows(self, settings: PluginSettings, parent: QWidget, form: QFormLayout) -> None:
        """Precision and CPU threads of the local backend (`serve --precision`, `--threads`); a change
        restarts a running local backend, as a model switch does."""
        self.precision_combo = QComboBox(parent)
        labels = {
            "auto": tr("Automatic (the fastest that agrees with full precision)"),
            "fp32": tr("fp32 (full precision)"),
            "bf16": tr("bf16 (CPUs with native bf16, GPUs)"),
            "int8": tr("int8 (CPU only)"),
            "openvino": tr("OpenVINO (CPU only; converts the model once, then faster)"),
        }
        for mode in PRECISIONS:
            self.precision_combo.addItem(labels[mode], mode)
        self.precision_combo.setCurrentIndex(max(0, self.precision_combo.findData(settings.local_precision)))
        self.precision_combo.setToolTip(
            tr(
                "How the model computes. bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX) or a GPU; "
                "elsewhere the backend refuses to start with it. OpenVINO runs the image encoder in "
                "Intel's CPU runtime: the first start converts the model (seconds to minutes), later "
                "starts reuse it."
            )
        )
        self.threads_spin = QSpinBox(parent)
        self.threads_spin.setRange(0, 256)
        self.threads_spin.setSpecialValueText(tr("automatic (one per physical core)"))
        self.threads_spin.setValue(settings.local_threads)
        self.threads_spin.setToolTip(tr("CPU threads the model uses; fewer leave cores free for QGIS"))
        form.addRow(tr("Precision"), self.precision_combo)
        form.addRow(tr("CPU threads"), self.threads_spin)

    def _output_group(self, settings: PluginSettings, parent: QWidget) -> QGroupBox:
        output = QGroupBox(tr("Sending and results"), parent)
        output_form = QFormLayout(output)
        self.send_combo = QComboBox(output)
        labels = {
            "auto": tr("File path when the backend can read it, else GeoTIFF"),
            "path": tr("Always the file path (shared file system)"),
            "upload": tr("Always a GeoTIFF of the area"),
        }
        for mode in SEND_MODES:
            self.send_combo.addItem(labels[mode], mode)
        self.send_combo.setCurrentIndex(max(0, self.send_combo.findData(settings.send_mode)))
        self.gpkg_edit = QgsFileWidget(output)
        self.gpkg_edit.setStorageMode(QgsFileWidget.SaveFile)
        self.gpkg_edit.setFilter("GeoPackage (*.gpkg)")
        self.gpkg_edit.setFilePath(settings.output_gpkg)
        self.gpkg_edit.setToolTip(
            tr(
                "Empty: a memory layer per phrase. Otherwise layers are appended to "
                "this GeoPackage (existing layers are never overwritten)."
            )
        )
        self.timeout_spin = QSpinBox(output)
        self.timeout_spin.setRange(5, 3600)
        self.timeout_spin.setSuffix(" s")
        self.timeout_spin.setValue(settings.request_timeout_s)
        output_form.addRow(tr("Send the raster as"), self.send_combo)
        output_form.addRow(tr("Results GeoPackage"), self.gpkg_edit)
        output_form.addRow(tr("Request timeout"), self.timeout_spin)
        return output

    def _setup_tab(self, settings: PluginSettings) -> QWidget:
        tab = QWidget(self)
        layout = QVBoxLayout(tab)
        form = QFormLayout()
        self.setup_folder_edit = QgsFileWidget(tab)
        self.setup_folder_edit.setStorageMode(QgsFileWidget.GetDirectory)
        self.setup_folder_edit.setFilePath(settings.setup_folder)
        self.setup_folder_edit.lineEdit().setPlaceholderText(str(default_setup_folder()))
        self.setup_python_edit = QgsFileWidget(tab)
        self.setup_python_edit.setFilePath(settings.setup_python)
        self.setup_python_edit.lineEdit().setPlaceholderText(tr("found automatically (QGIS's, else python3)"))
        self.torch_combo = QComboBox(tab)
        names = {"auto": tr("Automatic (CUDA with an NVIDIA GPU)"), "cpu": tr("CPU"), "cuda": tr("CUDA")}
        for build in BUILDS:
            self.torch_combo.addItem(names[build], build)
        self.torch_combo.setCurrentIndex(max(0, self.torch_combo.findData(settings.torch_build)))
        self.torch_index_edit = QLineEdit(settings.torch_index_url, tab)
        self.torch_index_edit.setPlaceholderText(tr("the usual one for the build"))
        self.wheel_folder_edit = QgsFileWidget(tab)
        self.wheel_folder_edit.setStorageMode(QgsFileWidget.GetDirectory)
        self.wheel_folder_edit.setFilePath(settings.wheel_folder)
        self.wheel_folder_edit.setToolTip(
            tr("Offline: install only from this folder of wheels (pip --find-links)")
        )
        form.addRow(tr("Folder"), self.setup_folder_edit)
        form.addRow(tr("Python for the set-up"), self.setup_python_edit)
        form.addRow(tr("torch build"), self.torch_combo)
        form.addRow(tr("torch package index"), self.torch_index_edit)
        form.addRow(tr("Offline wheel folder"), self.wheel_folder_edit)
        layout.addLayout(form)
        status = env_status(settings)
        self.setup_status_label = QLabel(
            status.message
            if status
            else tr("The local backend runs from the Python set on the Backend tab."),
            tab,
        )
        self.setup_status_label.setWordWrap(True)
        layout.addWidget(self.setup_status_label)
        self.repair_button = QPushButton(tr("Repair / reinstall"), tab)
        self.repair_button.setToolTip(
            tr("Build the local backend's environment again, with the values above")
        )
        self.repair_button.clicked.connect(self._repair)
        layout.addWidget(self.repair_button)
        layout.addStretch(1)
        return tab

    def _repair(self) -> None:
        self.repair_requested = True
        self.accept()

    def result_settings(self) -> PluginSettings:
        """The edited settings (a new object; the original is untouched until the caller saves it, which
        also moves a new token into the auth database)."""
        gpkg = self.gpkg_edit.filePath().strip()
        if gpkg and not gpkg.lower().endswith(".gpkg"):
            gpkg += ".gpkg"
        models = self.model_manager.current_settings()
        return dataclasses.replace(
            models,
            server_url=self.url_edit.text().strip() or PluginSettings().server_url,
            auth_config=self.auth_select.configId(),
            token=self.token_edit.text().strip(),
            start_local=self.local_group.isChecked(),
            allow_local=self.allow_local_check.isChecked(),
            python_path=self.python_edit.filePath().strip(),
            working_dir=self.workdir_edit.filePath().strip(),
            local_port=self.port_spin.value(),
            local_allow_path=self.allow_path_edit.filePath().strip(),
            local_precision=self.precision_combo.currentData(),
            local_threads=self.threads_spin.value(),
            send_mode=self.send_combo.currentData(),
            output_gpkg=gpkg,
            request_timeout_s=self.timeout_spin.value(),
            phrase_history=list(self._settings.phrase_history),
            setup_folder=self.setup_folder_edit.filePath().strip(),
            setup_python=self.setup_python_edit.filePath().strip(),
            torch_build=self.torch_combo.currentData(),
            torch_index_url=self.torch_index_edit.text().strip(),
            wheel_folder=self.wheel_folder_edit.filePath().strip(),
        )
