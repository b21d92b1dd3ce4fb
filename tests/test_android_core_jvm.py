"""The Android app's platform-free core (android_demo/core), compiled and tested on the JVM.

Runs android_demo/core/jvm-test.sh: javac + JUnit 4 from Debian's packages (installed with apt-get when missing
and running as root), no Gradle or Android SDK. Includes TilingFixtureTest, which reproduces
tests/fixtures/tiling.json written by test_android_core_fixture.py.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "android_demo" / "core" / "jvm-test.sh"


def test_android_core_passes_its_junit_tests():
    can_install = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if not shutil.which("javac") and not can_install:
        pytest.skip("needs a JDK (javac) and Debian's junit4 + libgoogle-gson-java: "
                    "apt-get install default-jdk-headless junit4 libgoogle-gson-java")
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "OK (" in done.stdout and "Tests run" not in done.stdout  # JUnitCore prints 'OK (N tests)' on success
    assert int(done.stdout.split("OK (")[1].split()[0]) >= 15
