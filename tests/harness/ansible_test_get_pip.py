"""Stand-in for the get-pip.py that ``ansible-test sanity`` downloads.

ansible-test creates one virtualenv per sanity test (pylint, pep8, yamllint,
validate-modules, ansible-doc, import, ...) without pip, then bootstraps pip
with a get-pip.py fetched from ci-files.testing.ansible.com, which this
machine cannot reach (only PyPI is).  ansible-test first looks for that
script in ~/.ansible/test/cache/get_pip_<version>.py; scripts/test.sh puts
this file there.  It bootstraps pip from the standard library (ensurepip,
offline) and then lets pip install what ansible-test asked for (the pinned
pip version) from PyPI, exactly as get-pip.py would.
"""

import subprocess
import sys


def main():
    try:
        subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                              stdout=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        sys.exit("ansible_test_get_pip: 'python -m ensurepip' failed "
                 "(on Debian: apt-get install python3-venv)")
    # get-pip.py options that plain 'pip install' does not know.
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    rc = subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *args])
    if rc == 0 and "--no-setuptools" in sys.argv[1:]:
        # ensurepip of Python < 3.12 also installs setuptools; get-pip.py would not have.
        subprocess.call([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet",
                         "setuptools"], stderr=subprocess.DEVNULL)
    sys.exit(rc)


if __name__ == "__main__":
    main()
