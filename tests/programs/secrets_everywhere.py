"""A program that hands a secret to every place scope could store it (tests/test_redaction.py).

Every secret is made at run time from ``S`` and a number saying which place it
went to, so a search of the recording for ``S`` finds any that was stored.
"""

import contextlib
import os
import sys
import warnings

S = "S3CR" + "3T"


class K(str):
    pass


class Client:
    def __init__(self, user, secret):
        self.auth = ("user", secret + "-7")


def fail(n):
    raise ValueError("bad password " + S + "-1")


def get_api_key():
    return S + "-3"


def login(pw, pwd, private_key, session_key, secret_key, access_token, cookie, credentials):
    return 1


def variadic(*args):
    return len(args)


def keyed(d):
    return len(d)


def my_odd_thing_user(my_odd_thing, data):
    return 0


def shapes(a, b, c, d, e, f):
    return 0


with contextlib.suppress(ValueError):
    fail(1)
get_api_key()
Client("u", S)
login(*(S + f"-8{i}" for i in range(8)))
variadic("ghp_" + "A1b2C3d4" * 5)
keyed({K("password"): S + "-9"})
my_odd_thing_user(S + "-10", {"my_odd_thing": S + "-11"})
shapes(
    "Authorization: Bearer " + S + "-12xyz",
    "https://bob:" + S + "-13@example.com/",
    "AKIA" + "ABCDEFGHIJKLMNOP",
    "xoxb-" + S + "-14-abcdef",
    "-----BEGIN RSA PRIVATE KEY-----\n" + S + "-15\n-----END RSA PRIVATE KEY-----",
    "ok",
)
os.system("true --password=" + S + "-5")
warnings.warn("using token " + S + "-6", stacklevel=1)
sys.exit("token: " + S + "-2")
