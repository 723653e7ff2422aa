from setuptools import find_packages, setup

setup(
    name="netsuite",
    version="0.1.0",
    description="Network-service daemons for a public Wi-Fi access point, "
                "with a hook bus any process can use",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["netsuite", "netsuite.*"]) + ["twisted.plugins"],
    # Every package lies where its name says, from the checkout's top: so
    # an editable install (pip install -e) is one static .pth of the
    # checkout (setuptools' editable_wheel, for package_dir {"": ...} and
    # this simple layout), and twistd and trial find both netsuite and
    # twisted/plugins/netsuite_*.py in the checkout.
    package_dir={"": "."},
    package_data={"twisted": ["plugins/netsuite_*.py"]},
    install_requires=[
        "pyroute2>=0.9.0",
        "python-iptables>=1.0.1",
        "ldap3>=2.9",
        "pyOpenSSL>=23.0",
        "service_identity>=21.1",
        "cryptography>=41.0",
        "Twisted>=23.10.0",
        "zope.interface>=6.0",
        "prometheus_client>=0.17",
    ],
    # atheris: the long fuzz campaigns of scripts/fuzz.py (a manylinux wheel)
    # NetfilterQueue: the mail proxy's nfqueue mode (built from source: it needs
    # libnetfilter-queue-dev, python3-dev and gcc, which scripts/setup.sh installs)
    extras_require={"test": ["pyflakes>=3.0", "hypothesis>=6.0", "atheris>=2.3"],
                    "nfqueue": ["NetfilterQueue>=1.1.0"]},
    entry_points={"console_scripts": ["netsuite-hook = netsuite.scripts.hook:main",
                                      "netsuite-lab = netsuite.lab.cli:main"]},
)
