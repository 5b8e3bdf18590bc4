"""A hostile SSH server on 127.0.0.1 (Paramiko's ServerInterface): it logs the client in by
key, then holds back one reply — the answer to `exec`, the stdin window, the SFTP subsystem or
an SFTP request — until the client leaves or `hold` seconds pass (bounded: it never outlives
the test). `client_left_first` counts the holds the client ended by hanging up.

    with HostileSshd(tmp / "h", client_pub, hold="exec") as server:
        ... inventory host at 127.0.0.1:server.port, trusted with server.known_hosts_line ...
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from pathlib import Path

import paramiko

from tests.ssh.sshd import free_port, keygen

HOLDS = ("exec", "stdin", "subsystem", "sftp-request")


def _client_gone(sock: socket.socket) -> bool:
    """True when the client closed its end (POLLRDHUP: seen even with unread data queued)."""
    if sock.fileno() < 0:  # the server's transport already closed it after the client left
        return True
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)
    return any(
        events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        for _, events in poller.poll(0)
    )


class _Server(paramiko.ServerInterface):
    def __init__(self, owner: HostileSshd, sock: socket.socket):
        self.owner = owner
        self.sock = sock

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        if key.get_base64() == self.owner.client_b64:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        if self.owner.hold == "exec":
            self.owner.wait_out(self.sock)
            return False
        # "stdin": accepted, but the channel is never read, so its window stays full until the
        # hold ends; any other command "succeeds" at once, printing nothing
        wait = self.owner.wait_out if self.owner.hold == "stdin" else lambda sock: None
        threading.Thread(target=self._exit_zero, args=(channel, wait), daemon=True).start()
        return True

    def _exit_zero(self, channel, wait):
        wait(self.sock)
        time.sleep(0.05)
        channel.send_exit_status(0)
        channel.close()

    def check_channel_subsystem_request(self, channel, name):
        if self.owner.hold == "subsystem":
            self.owner.wait_out(self.sock)
            return False
        if name != "sftp":
            return False
        threading.Thread(target=self._sftp_then_hold, args=(channel,), daemon=True).start()
        return True

    def _sftp_then_hold(self, channel):
        """Answer SFTP's version handshake, then never answer a request."""
        try:
            channel.recv(4096)  # SSH_FXP_INIT
            channel.sendall(struct.pack(">IBI", 5, 2, 3))  # SSH_FXP_VERSION 3
            self.owner.wait_out(self.sock)
        except OSError:
            pass


class HostileSshd:
    """An SSH server on 127.0.0.1:`port` that holds back one reply (see HOLDS)."""

    def __init__(self, root: Path, client_pub: Path, hold: str, seconds: float = 30.0):
        if hold not in HOLDS:
            raise ValueError(f"hold must be one of {HOLDS}")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        key_path = root / "ssh_host_ed25519_key"
        if not key_path.exists():
            keygen(key_path, "hostile-host")
        self.host_key = paramiko.Ed25519Key.from_private_key_file(str(key_path))
        self.client_b64 = Path(client_pub).read_text().split()[1]
        self.hold, self.seconds = hold, seconds
        self.port = free_port()
        self.holds = 0
        self.client_left_first = 0
        self.left = threading.Event()  # set when a hold ended because the client hung up
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._threads: list[threading.Thread] = []
        self._transports: list[paramiko.Transport] = []

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n"

    def wait_out(self, sock: socket.socket) -> None:
        """Hold until the client hangs up, the server stops or `seconds` pass."""
        self.holds += 1
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline and not self._stop.is_set():
            if _client_gone(sock):
                self.client_left_first += 1
                self.left.set()
                return
            time.sleep(0.05)

    def _serve(self) -> None:
        for _ in range(20):  # a bounded number of connections
            while not self._stop.is_set():
                try:
                    sock, _ = self._listener.accept()
                    break
                except socket.timeout:
                    continue
            else:
                return
            transport = paramiko.Transport(sock, default_window_size=32768)
            transport.add_server_key(self.host_key)
            self._transports.append(transport)
            try:
                transport.start_server(server=_Server(self, sock))
            except (paramiko.SSHException, EOFError, OSError):
                continue

    def __enter__(self) -> HostileSshd:
        thread = threading.Thread(target=self._serve, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for transport in self._transports:
            transport.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()
