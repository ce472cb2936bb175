"""Runs one Swift server of the test S3 server (see ./start).

launch.py ETC SERVER CONF LOGFILE PORTFILE

- configuration from ETC/swift.conf, never /etc/swift;
- logs to LOGFILE instead of syslog;
- the server binds the port its config names, normally 0: the kernel picks a free one,
  which is written to PORTFILE once the socket listens (no port is picked and bound later);
- the proxy accepts SigV4 for any region and a Host signed without its port, as
  git-annex's aws library signs (the signature itself is still checked)."""
import logging
import os
import sys

etc, server, conf, logfile, portfile = sys.argv[1:6]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from swift.common import utils  # noqa: E402


class FileLogHandler(logging.FileHandler):
    def __init__(self, address=None, facility=None, **kwargs):
        logging.FileHandler.__init__(self, logfile)


utils.ThreadSafeSysLogHandler = FileLogHandler

from swift.common import wsgi as swift_wsgi  # noqa: E402

_orig_get_socket = swift_wsgi.get_socket


def get_socket(conf):
    sock = _orig_get_socket(conf)
    tmp = portfile + '.tmp'
    with open(tmp, 'w') as f:
        f.write('%d\n' % sock.getsockname()[1])
    os.rename(tmp, portfile)
    return sock


swift_wsgi.get_socket = get_socket

if server == 'proxy-server':
    from swift.common.middleware.s3api import s3request

    # git-annex (aws-0.22) signs with the endpoint host as the region ("127.0.0.1"),
    # SDKs with e.g. us-east-1: accept the region the client signed for.
    _orig_parse_credential = s3request.SigV4Mixin._parse_credential

    def _parse_credential(self, credential_string):
        cred = _orig_parse_credential(self, credential_string)
        self.location = cred['region']
        return cred
    s3request.SigV4Mixin._parse_credential = _parse_credential

    # git-annex also signs Host without the port while sending "Host: 127.0.0.1:PORT":
    # when the signature does not match, try once more with the port stripped.
    _orig_string_to_sign = s3request.SigV4Mixin._string_to_sign

    def _string_to_sign(self):
        sts = _orig_string_to_sign(self)
        self._portless_string_to_sign = None
        host = self.environ.get('HTTP_HOST', '')
        if ':' in host and not host.endswith(']'):
            saved = {k: self.environ[k] for k in ('HTTP_HOST', 'wsgi.input', 'headers_raw') if k in self.environ}
            self.environ['HTTP_HOST'] = host.rsplit(':', 1)[0]
            if 'headers_raw' in saved:  # eventlet: what s3api really signs
                self.environ['headers_raw'] = tuple(
                    (k, v.rsplit(':', 1)[0] if k.lower() == 'host' else v) for k, v in saved['headers_raw'])
            try:
                self._portless_string_to_sign = _orig_string_to_sign(self)
            except Exception:
                pass
            finally:
                self.environ.update(saved)
        return sts
    s3request.SigV4Mixin._string_to_sign = _string_to_sign

    _orig_check_signature = s3request.SigV4Mixin.check_signature

    def check_signature(self, secret):
        if _orig_check_signature(self, secret):
            return True
        alt = getattr(self, '_portless_string_to_sign', None)
        if not alt:
            return False
        saved, self.string_to_sign = self.string_to_sign, alt
        try:
            return _orig_check_signature(self, secret)
        finally:
            self.string_to_sign = saved
    s3request.SigV4Mixin.check_signature = check_signature

    # aws-chunked uploads: the shims decoded the body and told s3api UNSIGNED-PAYLOAD;
    # the client signed the original STREAMING-… value, so it goes back into the
    # canonical request.
    _orig_canonical_request = s3request.SigV4Mixin._canonical_request

    def _canonical_request(self):
        cr = _orig_canonical_request(self)
        original = self.environ.get('s3test.streaming_content_sha256')
        if original:
            cr = cr.rpartition(b'\n')[0] + b'\n' + original.encode('ascii')
        return cr
    s3request.SigV4Mixin._canonical_request = _canonical_request

utils.set_swift_dir(etc)
from swift.common import storage_policy  # noqa: E402
storage_policy.reload_storage_policies()

sys.exit(swift_wsgi.run_wsgi(conf, server))
