"""One file server on loopback until SIGTERM or SIGKILL: ``python -m tests.support.serve_files CONFIG``.

CONFIG is a JSON file that tests/support/file_servers.py writes: ``kind`` (ftp, sftp or dav),
``port``, ``root``, ``user`` and the kind's own keys (password, TLS certificate and key files,
SSH host key and authorized_keys files). The server logs only warnings and errors, to stderr.
A port someone else holds ends it with exit code PORT_TAKEN (98, EADDRINUSE); another error
that stops it from serving, with exit code 1; either is said on stderr.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
PORT_TAKEN = 98


def serve_ftp(config: dict[str, Any]) -> None:
    """pyftpdlib; with ``cert`` (a PEM chain) and ``key``, explicit FTPS with TLS required on
    both channels. Passive data ports are ones the kernel picks, on loopback."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    handler: type[FTPHandler]
    if config.get("cert"):
        from pyftpdlib.handlers import TLS_FTPHandler

        class Handler(TLS_FTPHandler):
            certfile = config["cert"]
            keyfile = config["key"]
            tls_control_required = True
            tls_data_required = True

        handler = Handler
    else:
        class Handler(FTPHandler):  # type: ignore[no-redef]
            pass

        handler = Handler
    authorizer = DummyAuthorizer()
    authorizer.add_user(config["user"], config["password"], config["root"], perm="elradfmwMT")
    handler.authorizer = authorizer
    handler.banner = "hls test FTP"
    handler.auth_failed_timeout = 0.1  # seconds before a 530; pyftpdlib's 3 s only slows tests
    server = FTPServer((LOOPBACK, config["port"]), handler)
    server.serve_forever(handle_exit=False)


def serve_sftp(config: dict[str, Any]) -> None:
    """asyncssh with SFTP only (no shell, exec, scp or forwarding), chrooted to ``root``, and
    public-key authentication only, for the keys in ``authorized_keys``."""
    import asyncio

    import asyncssh

    root = config["root"].encode()

    def sftp_factory(chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
        return asyncssh.SFTPServer(chan, chroot=root)

    async def serve() -> None:
        await asyncssh.listen(
            LOOPBACK, config["port"],
            server_host_keys=[config["host_key"]],
            authorized_client_keys=config["authorized_keys"],
            sftp_factory=sftp_factory, allow_scp=False,
            password_auth=False, kbdint_auth=False, gss_host=None,
            agent_forwarding=False, x11_forwarding=False, allow_pty=False,
        )
        await asyncio.Event().wait()

    asyncio.run(serve())


def serve_dav(config: dict[str, Any]) -> None:
    """wsgidav on cheroot: ``root`` read-write for one user with HTTP Basic auth (no digest, no
    anonymous); https with ``cert`` (a PEM chain) and ``key``."""
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    app = WsgiDAVApp({
        "host": LOOPBACK,
        "port": config["port"],
        "provider_mapping": {"/": {"root": config["root"], "readonly": False}},
        "simple_dc": {"user_mapping": {"*": {config["user"]: {"password": config["password"]}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "dir_browser": {"enable": False},
        "verbose": 1,
        "logging": {"enable": False},
        "suppress_version_info": True,
    })
    server = wsgi.Server((LOOPBACK, config["port"]), app, server_name="hls-test-dav")
    if config.get("cert"):
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        server.ssl_adapter = BuiltinSSLAdapter(config["cert"], config["key"])
    server.safe_start()


SERVERS = {"ftp": serve_ftp, "sftp": serve_sftp, "dav": serve_dav}


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("asyncssh").setLevel(logging.ERROR)  # it warns of every dropped connection
    try:
        SERVERS[config["kind"]](config)
    except OSError as error:
        # asyncio and cheroot word a bind's failure their own way; not all keep the errno.
        taken = error.errno == errno.EADDRINUSE or "address already in use" in str(error).lower()
        print(f"{config['kind']} server on port {config['port']}: {error}", file=sys.stderr, flush=True)
        sys.exit(PORT_TAKEN if taken else 1)


if __name__ == "__main__":
    main()
