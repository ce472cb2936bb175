"""Shims that make Swift 2.30's s3api a single-process test server that today's AWS SDKs
and git-annex's own S3 remote both talk to (measured in ../shared/s3 of the team notes).
Loaded by the proxy pipeline (paste filters) and by launch.py."""
import base64
import hashlib
import io
import json
import time
from urllib.parse import parse_qs


class MemoryCache(object):
    """In-process stand-in for memcached: tempauth needs some swift.cache, and the proxy
    runs as one process (workers = 0), so a dict is coherent."""

    def __init__(self):
        self._data = {}

    @staticmethod
    def _expiry(t):
        t = float(t or 0)
        if t <= 0:
            return None
        return t if t > 30 * 24 * 3600 else time.time() + t

    def _live(self, key):
        item = self._data.get(key)
        if item is not None and item[2] is not None and item[2] <= time.time():
            self._data.pop(key, None)
            return None
        return item

    def set(self, key, value, serialize=True, time=0, min_compress_len=0, raise_on_error=False, **kwargs):
        self._data[key] = (json.dumps(value) if serialize else value, serialize, self._expiry(time))

    def get(self, key, raise_on_error=False, **kwargs):
        item = self._live(key)
        if item is None:
            return None
        return json.loads(item[0]) if item[1] else item[0]

    def incr(self, key, delta=1, time=0, **kwargs):
        item = self._live(key)
        value = max(0, int(item[0] if item else 0) + int(delta))
        self._data[key] = (str(value), False, item[2] if item else self._expiry(time))
        return value

    def decr(self, key, delta=1, time=0, **kwargs):
        return self.incr(key, -delta, time)

    def delete(self, key, server_key=None, **kwargs):
        self._data.pop(key, None)

    def set_multi(self, mapping, server_key, serialize=True, time=0, min_compress_len=0, **kwargs):
        for key, value in mapping.items():
            self.set(key, value, serialize=serialize, time=time)

    def get_multi(self, keys, server_key, **kwargs):
        return [self.get(key) for key in keys]


def cache_filter_factory(global_conf, **local_conf):
    cache = MemoryCache()

    def cache_filter(app):
        def middleware(env, start_response):
            env['swift.cache'] = cache
            return app(env, start_response)
        return middleware
    return cache_filter


class AwsChunkedInput(object):
    """Decodes an aws-chunked body. Chunk signatures and trailing checksums are not
    verified (the request's header signature is)."""

    def __init__(self, raw):
        self._raw = raw
        self._left = 0
        self._done = False

    def _line(self):
        line = self._raw.readline(65536)
        if not line:
            raise IOError('truncated aws-chunked body')
        return line

    def read(self, size=-1):
        while not self._done and self._left == 0:
            size_field = self._line().split(b';', 1)[0].strip()
            if not size_field:
                continue  # the CRLF that ends the previous chunk's data
            self._left = int(size_field, 16)
            if self._left == 0:
                while self._line().strip():  # trailers, up to the blank line
                    pass
                self._done = True
        if self._done:
            return b''
        n = self._left if size is None or size < 0 else min(size, self._left)
        data = self._raw.read(n)
        if not data:
            raise IOError('truncated aws-chunked body')
        self._left -= len(data)
        return data

    def readline(self, size=-1):
        return self.read(size)


def s3compat_filter_factory(global_conf, **local_conf):
    def s3compat_filter(app):
        def middleware(env, start_response):
            sha = env.get('HTTP_X_AMZ_CONTENT_SHA256', '')
            encodings = [e.strip() for e in env.get('HTTP_CONTENT_ENCODING', '').split(',') if e.strip()]
            if sha.startswith('STREAMING-') or 'aws-chunked' in encodings:
                # aws-chunked upload (the SDKs' default for streams of known length);
                # launch.py puts the original x-amz-content-sha256 back into the
                # SigV4 canonical request.
                decoded = env.pop('HTTP_X_AMZ_DECODED_CONTENT_LENGTH', None)
                if decoded is not None:
                    env['CONTENT_LENGTH'] = decoded
                    env.pop('HTTP_TRANSFER_ENCODING', None)
                encodings = [e for e in encodings if e != 'aws-chunked']
                if encodings:
                    env['HTTP_CONTENT_ENCODING'] = ', '.join(encodings)
                else:
                    env.pop('HTTP_CONTENT_ENCODING', None)
                env['s3test.streaming_content_sha256'] = sha
                env['HTTP_X_AMZ_CONTENT_SHA256'] = 'UNSIGNED-PAYLOAD'
                env['wsgi.input'] = AwsChunkedInput(env['wsgi.input'])
            if (env.get('REQUEST_METHOD') == 'PUT'
                    and env.get('HTTP_IF_NONE_MATCH', '').strip() == '*'
                    and 'uploadId' not in env.get('QUERY_STRING', '')):
                # Conditional create: s3api 2.30 answers 501; hide it from s3api,
                # s3compat-inner hands it to Swift, which implements it.
                env['HTTP_X_S3TEST_IF_NONE_MATCH'] = env.pop('HTTP_IF_NONE_MATCH')
            elif (env.get('REQUEST_METHOD') == 'POST'
                  and 'HTTP_CONTENT_MD5' not in env
                  and 'delete' in parse_qs(env.get('QUERY_STRING', ''), keep_blank_values=True)):
                # DeleteObjects: AWS accepts any x-amz-checksum-*, s3api insists on Content-MD5.
                length = int(env.get('CONTENT_LENGTH') or 0)
                if 0 < length <= 4 * 1024 * 1024:
                    body = env['wsgi.input'].read(length)
                    env['wsgi.input'] = io.BytesIO(body)
                    env['HTTP_CONTENT_MD5'] = base64.b64encode(hashlib.md5(body).digest()).decode('ascii')
            return app(env, start_response)
        return middleware
    return s3compat_filter


def s3compat_inner_filter_factory(global_conf, **local_conf):
    def s3compat_inner_filter(app):
        def middleware(env, start_response):
            value = env.pop('HTTP_X_S3TEST_IF_NONE_MATCH', None)
            if value is not None and env.get('REQUEST_METHOD') == 'PUT':
                env['HTTP_IF_NONE_MATCH'] = value
            return app(env, start_response)
        return middleware
    return s3compat_inner_filter
