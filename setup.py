"""The build as pyproject.toml declares it, plus the browser client in the wheel.

web/ lives beside the package in a checkout (the pages, and web/dist once `make web` has
built the notes editor); a wheel carries it as ``realtime/web``, which the installed server
serves (realtime/app.py, ``WEB``), with the JavaScript SDK's modules as ``realtime/sdk``.
Editable installs serve the checkout's web/ instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# What the browser loads: the pages, styles, modules and the built notes editor. Not the
# editor's sources (web/vendor-src), which only the bundler reads.
SHIPPED = ("*.html", "*.svg", "css/*.css", "js/*.js", "dist/*.js", "dist/*.js.map")


class BuildWithWeb(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "realtime" / "web"
        for pattern in SHIPPED:
            for source in sorted((ROOT / "web").glob(pattern)):
                destination = target / source.relative_to(ROOT / "web")
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)
        # The SDK's modules, which the pages import from /sdk/ (realtime/app.py, ``SDK``).
        sdk = Path(self.build_lib) / "realtime" / "sdk"
        for source in sorted((ROOT / "clients" / "js" / "src").glob("*.js")):
            sdk.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, sdk / source.name)


setup(cmdclass={"build_py": BuildWithWeb})
