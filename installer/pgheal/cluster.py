"""A throwaway PostgreSQL cluster: its own directory and socket, PL/Python, pg_cron.

Used by ``pgheal demo`` and the test suite. PostgreSQL refuses to run as root, so
as root the server runs as the ``postgres`` OS user (``runuser``). The cluster
listens on a Unix socket in its own directory only, so it never clashes with a
server that is already running.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

MIN_MAJOR = 15
SUPERUSER = "postgres"


class ClusterError(RuntimeError):
    pass


def find_bindir() -> Path:
    """The newest installed server (>= 15), or ``$PGHEAL_PG_BINDIR``."""
    if os.environ.get("PGHEAL_PG_BINDIR"):
        return Path(os.environ["PGHEAL_PG_BINDIR"])
    found = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        major = candidate.parent.name
        if major.isdigit() and int(major) >= MIN_MAJOR and (candidate / "initdb").exists():
            found.append((int(major), candidate))
    if not found:
        raise ClusterError(
            "no PostgreSQL server found in /usr/lib/postgresql: "
            "apt-get install postgresql-15 postgresql-plpython3-15 postgresql-15-cron "
            "postgresql-contrib (or set PGHEAL_PG_BINDIR)"
        )
    return max(found)[1]


class Cluster:
    """initdb + pg_ctl in a temporary directory (in `directory`, else the system's);
    :meth:`stop` removes it all."""

    def __init__(
        self,
        port: int = 5432,
        bindir: Path | None = None,
        pg_cron: bool = True,
        csvlog: bool = True,
        directory: Path | None = None,
        logical: bool = False,
        extra: str = "",
    ) -> None:
        self.port = port
        self.pg_cron = pg_cron
        self.csvlog = csvlog
        #: wal_level = logical, for the learning network's publications.
        self.logical = logical
        #: More postgresql.conf lines.
        self.extra = extra
        self.bindir = bindir or find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="pgheal-", dir=directory))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.log_file = self.root / "server.log"
        self.as_root = os.geteuid() == 0

    # -- process control ------------------------------------------------------------------

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise ClusterError(
                f"{' '.join(args[:2])} failed:\n{result.stdout}{result.stderr}{log[-2000:]}"
            )
        return result

    def start(self) -> Cluster:
        if self.as_root:
            entry = pwd.getpwnam(SUPERUSER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o755)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8")  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(self.settings())
        self.resume()
        return self

    def pause(self) -> None:
        """Stop the server, keeping its data: :meth:`resume` starts it again."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-w", "start")

    def settings(self) -> str:
        socket = str(self.socket_dir)
        cron = (
            f"shared_preload_libraries = 'pg_cron'\n"
            f"cron.database_name = 'postgres'\n"
            f"cron.host = '{socket}'\n"
            if self.pg_cron
            else ""
        )
        return (
            f"""
# pgheal throwaway cluster
listen_addresses = ''
port = {self.port}
unix_socket_directories = '{socket}'
{cron}fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 40
"""
            + ("wal_level = logical\n" if self.logical else "")
            + self.extra
            + (
                "logging_collector = on\nlog_destination = 'csvlog'\nlog_directory = 'log'\n"
                if self.csvlog
                else ""
            )
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def stop_command(self) -> str:
        prefix = f"runuser -u {SUPERUSER} -- " if self.as_root else ""
        return f"{prefix}{self.bindir / 'pg_ctl'} -D {self.data} -m fast stop && rm -rf {self.root}"

    # -- connecting -------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        """A ``postgresql://`` URI for the socket."""
        return (
            f"postgresql://{SUPERUSER}@/{quote(dbname)}"
            f"?host={quote(str(self.socket_dir), safe='')}&port={self.port}"
        )

    def version(self) -> str:
        out = self._run("pg_ctl", "--version").stdout
        match = re.search(r"(\d+(?:\.\d+)?)", out)
        return match.group(1) if match else out.strip()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
