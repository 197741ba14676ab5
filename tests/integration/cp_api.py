"""The control plane's API (HTTPS by default), as the tests call it.

The API serves a certificate from the control plane's own CA. A test trusts that CA as an operator
would: the root file the CA generated in the data directory (root_file), or, where there is none
(a root shared through etcd), the root the control plane presents whose SHA-256 fingerprint it
logged at start (pin_from_log, what `meshctl context set --ca-fingerprint` does). Host names are
not checked: the certificate names the control plane's Service and SPIFFE id, not 127.0.0.1.
Helpers that start a control plane record its CA file by API address (trust), so that request()
needs only the address.
"""

import hashlib
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request


_ca_files = {}


def trust(address, ca_file):
    """Requests to the API at `address` verify it with `ca_file` from now on; returns ca_file."""
    _ca_files[address] = ca_file
    return ca_file


def ca_file_for(address):
    if address not in _ca_files:
        raise AssertionError(f"no CA recorded for the API at {address} (cp_api.trust)")
    return _ca_files[address]


def root_file(data_dir):
    """Where the control plane's generated CA root lives in its data directory."""
    return os.path.join(data_dir, "ca", "root-cert.pem")


def certificate_spki(port, ca_file):
    """base64 SHA-256 of the public key of the API certificate on 127.0.0.1:`port`, which a test
    browser is told to accept (--ignore-certificate-errors-spki-list): an operator's browser would
    trust the mesh CA."""
    import base64
    import socket
    import subprocess
    context = ssl_context(ca_file)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    key = subprocess.run(["openssl", "x509", "-inform", "DER", "-pubkey", "-noout"],
                         input=der, capture_output=True, check=True).stdout
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=key,
                          capture_output=True, check=True).stdout
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def ssl_context(ca_file, timeout=10):
    """A client context trusting the PEM roots of `ca_file`, which the control plane may still be
    writing when its API address appears in the log."""
    deadline = time.time() + timeout
    while True:
        try:
            context = ssl.create_default_context(cafile=ca_file)
            break
        except (FileNotFoundError, ssl.SSLError):
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    context.check_hostname = False
    return context


def logged_fingerprints(log_path, timeout=10):
    """The fingerprints of the CA roots the control plane logged last ('--ca-fingerprint
    sha256:HEX[ or sha256:HEX]')."""
    deadline = time.time() + timeout
    while True:
        with open(log_path, errors="replace") as f:
            found = re.findall(r"--ca-fingerprint (sha256:[0-9a-f]{64}(?: or sha256:[0-9a-f]{64})*)",
                               f.read())
        if found:
            return found[-1].split(" or ")
        if time.time() > deadline:
            raise AssertionError("no CA fingerprint in " + log_path)
        time.sleep(0.05)


def pin_from_log(address, log_path, out_path):
    """Fetches the API's trust bundle without verifying, keeps the roots whose fingerprints the
    control plane logged, writes them to `out_path`, trusts them for `address` and returns
    `out_path`."""
    wanted = logged_fingerprints(log_path)
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://{address}/api/v1/trust-bundle", timeout=5,
                                context=unverified) as r:
        bundle = r.read().decode()
    kept = [pem for pem in re.findall(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", bundle, re.S)
        if "sha256:" + hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest() in wanted]
    if len(kept) != len(wanted):
        raise AssertionError(f"the control plane at {address} presents not all of {wanted}")
    with open(out_path, "w") as f:
        f.write("\n".join(kept) + "\n")
    return trust(address, out_path)


def url(address, path):
    return f"https://{address}{path}"


def request(address, method, path, body=None, token=None, headers=None, timeout=5,
            ca_file=None):
    """(status, body text) of an HTTPS request to the API at `address`, verified with `ca_file`
    (default: the one recorded for it); `body` is bytes or str."""
    ca_file = ca_file or ca_file_for(address)
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = "Bearer " + token
    if isinstance(body, str):
        body = body.encode()
    req = urllib.request.Request(url(address, path), data=body, method=method,
                                 headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_context(ca_file)) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def urlopen(req, timeout=5):
    """urllib.request.urlopen of an https:// URL or Request to an API trusted here."""
    full_url = req.full_url if isinstance(req, urllib.request.Request) else req
    address = urllib.parse.urlsplit(full_url).netloc
    return urllib.request.urlopen(req, timeout=timeout, context=ssl_context(ca_file_for(address)))
