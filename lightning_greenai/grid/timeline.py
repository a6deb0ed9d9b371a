"""Carbon intensity that changes by the hour: energy per wall-clock hour times that hour's intensity.

A :class:`~lightning_greenai.Meter` files every reading's energy under the UTC hour(s) it was spent in
(:attr:`Spend.hourly_energy_j <lightning_greenai.Spend.hourly_energy_j>`, hour keys like ``"2026-11-27T13"``). A
:class:`~lightning_greenai.Grid` with a ``timeline`` (hour -> gCO2e/kWh) prices each hour's share of the energy at
that hour's intensity, and any hour the timeline lacks at the grid's yearly figure. Two sources:

- :func:`read_intensity_csv`: a CSV the user provides (a time column and an intensity column; Electricity Maps'
  exports read as they are).
- :class:`ElectricityMaps`: Electricity Maps' API (opt-in: it needs a token and is never called without one), with a
  cache on disk shared by every process on the machine, so a sweep requests each hour at most once an hour.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from lightning_greenai.errors import GridConfigError
from lightning_greenai.io import JSONDepthError, parse_json

__all__ = [
    "MAX_INTENSITY_G_PER_KWH",
    "ElectricityMaps",
    "ProviderError",
    "hour_key",
    "read_intensity_csv",
    "split_by_hour",
]

_HOUR_S = 3600.0
#: Column names taken for the intensity, best first (Electricity Maps' exports: life-cycle, then direct).
_INTENSITY_COLUMNS = (
    "carbon_intensity_g_per_kwh",
    "carbon intensity gco₂eq/kwh (life cycle)",
    "carbon intensity gco₂eq/kwh (lca)",
    "carbon intensity gco₂eq/kwh (direct)",
    "carbonintensity",
    "intensity_g_per_kwh",
    "intensity",
)
_TIME_COLUMNS = ("datetime (utc)", "datetime", "time", "timestamp", "hour")


def hour_key(epoch_s: float) -> str:
    """The UTC hour an instant falls in, e.g. ``"2026-11-27T13"``."""
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).strftime("%Y-%m-%dT%H")


def _hour_start(key: str) -> datetime:
    return datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)


def split_by_hour(start_s: float, end_s: float, energy_j: float) -> dict[str, float]:
    """Spread ``energy_j`` spent between two instants evenly over time, by UTC hour."""
    if energy_j <= 0:
        return {}
    if end_s <= start_s:
        return {hour_key(end_s): energy_j}
    out: dict[str, float] = {}
    t = start_s
    while t < end_s:
        boundary = (math.floor(t / _HOUR_S) + 1) * _HOUR_S
        upto = min(boundary, end_s)
        key = hour_key(t)
        out[key] = out.get(key, 0.0) + energy_j * (upto - t) / (end_s - start_s)
        t = upto
    return out


def _parse_time(text: str, where: str) -> str:
    value = text.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise GridConfigError(f"{where}: {text!r} is not an ISO 8601 date and time (e.g. 2026-11-27T13:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # a time without an offset is UTC
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H")


def read_intensity_csv(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read an hourly carbon-intensity timeline (UTC hour -> gCO2e/kWh) from a CSV file.

    The file has a header row, a time column (``datetime``, ``Datetime (UTC)``, ``time``, ``timestamp`` or ``hour``;
    ISO 8601, UTC when it has no offset) and an intensity column in gCO2e/kWh (``carbon_intensity_g_per_kwh``,
    ``intensity`` or Electricity Maps' ``Carbon intensity gCO₂eq/kWh (Life cycle)`` / ``(direct)``). Rows within one
    hour are averaged.

    Raises:
        GridConfigError: the file is missing, lacks either column, or a row's time or intensity is unreadable (named
            with its line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise GridConfigError(
            f"the intensity timeline {str(path)!r} is not UTF-8 text (byte {err.start}): save it as UTF-8 CSV"
        ) from None
    except OSError as err:
        raise GridConfigError(f"cannot read the intensity timeline {str(path)!r}: {err.strerror or err}") from None
    rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    if not rows:
        raise GridConfigError(f"the intensity timeline {str(path)!r} is empty")
    header = [h.strip().lower() for h in rows[0]]
    time_col = next((header.index(c) for c in _TIME_COLUMNS if c in header), None)
    value_col = next((header.index(c) for c in _INTENSITY_COLUMNS if c in header), None)
    if time_col is None or value_col is None:
        missing = "time column" if time_col is None else "intensity column"
        hint = " (it looks separated by ';': the file must use commas)" if len(header) == 1 and ";" in header[0] else ""
        raise GridConfigError(
            f"the intensity timeline {str(path)!r} has no {missing}{hint}; its header is {rows[0]!r}. It needs one "
            f"of {', '.join(_TIME_COLUMNS)} and one of {', '.join(_INTENSITY_COLUMNS)}"
        )
    sums: dict[str, list[float]] = {}
    for line, row in enumerate(rows[1:], start=2):
        where = f"{path.name}, data row {line - 1}"
        if len(row) <= max(time_col, value_col):
            raise GridConfigError(f"{where}: expected {len(header)} columns, got {len(row)}")
        hour = _parse_time(row[time_col], where)
        try:
            value = float(row[value_col])
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise GridConfigError(f"{where}: the intensity must be a number >= 0 (gCO2e/kWh), got {row[value_col]!r}")
        if value > MAX_INTENSITY_G_PER_KWH:
            raise GridConfigError(
                f"{where}: {value:g} gCO2e/kWh is not a grid's intensity (the dirtiest are about 1,100; at most "
                f"{MAX_INTENSITY_G_PER_KWH:g} is taken): is the column in another unit?"
            )
        sums.setdefault(hour, []).append(value)
    if not sums:
        raise GridConfigError(f"the intensity timeline {str(path)!r} has no rows")
    return {hour: sum(v) / len(v) for hour, v in sorted(sums.items())}


class ProviderError(OSError):
    """Electricity Maps could not be asked, or answered nothing usable (its hours are not asked again for an hour)."""


#: Above this, an hourly intensity is taken for a mistake (the dirtiest grids are about 1,100 gCO2e/kWh).
MAX_INTENSITY_G_PER_KWH = 3000.0


def _finite(value: Any) -> float | None:
    """A finite number as a float, else ``None``."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)


def _intensity(value: Any) -> float | None:
    """An hourly intensity as Electricity Maps may give it (a number from 0 to the maximum), else ``None``."""
    number = _finite(value)
    return number if number is not None and 0 <= number <= MAX_INTENSITY_G_PER_KWH else None


def _open_same_host(request: Any, timeout_s: float) -> Any:
    """Open ``request``, following a redirect only to the same scheme, host and port: the token stays with the API."""
    import urllib.parse  # here: importing the package must stay light, and most runs never ask
    import urllib.request

    class RefuseOtherHosts(urllib.request.HTTPRedirectHandler):
        def redirect_request(
            self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
        ) -> urllib.request.Request | None:
            old = urllib.parse.urlsplit(req.full_url)
            new = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl))
            if (old.scheme, old.hostname, old.port) != (new.scheme, new.hostname, new.port):
                raise ProviderError(
                    f"Electricity Maps at {old.scheme}://{old.netloc} redirected to {new.scheme}://{new.netloc}, "
                    "another host: not followed, so the token is not sent there (pass url= the API's own address)"
                )
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(RefuseOtherHosts).open(request, timeout=timeout_s)


class ElectricityMaps:
    """Hourly carbon intensity from Electricity Maps' API (``/carbon-intensity/past-range``), cached on disk.

    Opt-in: nothing is requested unless an instance is given a token. Each hour is requested at most once an hour
    by all processes sharing ``cache_dir`` (an hour not published yet is asked again after an hour); a failed request
    is warned about by the caller, and those hours are priced at the grid's yearly figure.

    Args:
        zone: The Electricity Maps zone, e.g. ``"DE"`` or ``"US-CAL-CISO"``.
        token: The API token (default: the ``ELECTRICITYMAPS_TOKEN`` environment variable).
        url: The API's base URL.
        cache_dir: Where the cache lives (default: ``~/.cache/lightning-greenai/electricitymaps``).
        timeout_s: A request's timeout.
    """

    URL = "https://api.electricitymap.org/v3"

    def __init__(
        self,
        zone: str,
        token: str | None = None,
        *,
        url: str = URL,
        cache_dir: str | os.PathLike[str] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not isinstance(zone, str) or not zone.strip():
            raise GridConfigError(f"an Electricity Maps zone is a code such as 'DE' or 'US-CAL-CISO', got {zone!r}")
        token = token if token is not None else os.environ.get("ELECTRICITYMAPS_TOKEN")
        if not token:
            raise GridConfigError(
                "Electricity Maps needs an API token: pass token= or set ELECTRICITYMAPS_TOKEN (nothing is requested "
                "without one)"
            )
        self.zone, self._token, self.url, self.timeout_s = zone.strip(), token, url.rstrip("/"), timeout_s
        base = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "lightning-greenai"
        self.cache_path = (base if cache_dir is not None else base / "electricitymaps") / f"{self.zone}.json"
        self.requests = 0  # made by this instance
        self._memory: dict[str, dict[str, float]] = {"hours": {}, "asked": {}}

    @property
    def source(self) -> str:
        """Where the figures come from, for the price tag."""
        return f"Electricity Maps, zone {self.zone}, hourly (life-cycle)"

    def _load(self) -> dict[str, dict[str, float]]:
        """The cache, with whatever is damaged in it dropped (it is asked for again)."""
        try:
            data = parse_json(self.cache_path.read_bytes())
        except (OSError, ValueError):  # missing, not JSON, or nested deeper than any cache of ours
            data = {}
        out: dict[str, dict[str, float]] = {"hours": {}, "asked": {}}
        for key in out:
            part = data.get(key) if isinstance(data, dict) else None
            for hour, value in part.items() if isinstance(part, dict) else ():
                number = _intensity(value) if key == "hours" else _finite(value)  # bounded as the API's answers
                if number is not None:
                    out[key][str(hour)] = number
        return out

    def intensities(self, hours: Iterable[str], *, now_s: float | None = None) -> dict[str, float]:
        """Return the intensity of each hour Electricity Maps has published (requesting the missing ones once).

        Raises:
            ProviderError: the request failed or its answer was unusable (the message says which); an OSError.
        """
        wanted = sorted(set(hours))
        if not wanted:
            return {}
        now = datetime.now(timezone.utc).timestamp() if now_s is None else now_s
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            lock: Any = FileLock(str(self.cache_path) + ".lock")
            with lock:
                return self._with_cache(wanted, now, shared=True)
        except ProviderError:
            raise
        except OSError:  # the cache cannot be used here: this process keeps what it learns in memory
            return self._with_cache(wanted, now, shared=False)

    def _with_cache(self, wanted: list[str], now: float, *, shared: bool) -> dict[str, float]:
        cache = self._load() if shared else {"hours": {}, "asked": {}}
        for key in ("hours", "asked"):  # what this process learnt, if the file could not keep it
            cache[key] = {**self._memory[key], **cache[key]}
        missing = [h for h in wanted if h not in cache["hours"] and now - cache["asked"].get(h, -math.inf) > 3600]
        failure: ProviderError | None = None
        if missing:
            try:
                cache["hours"].update(self._request(missing[0], missing[-1]))
            except ProviderError as err:
                failure = err  # asked all the same: a failing service is not asked again within the hour
            for hour in missing:
                cache["asked"][hour] = now
            self._memory = {"hours": dict(cache["hours"]), "asked": dict(cache["asked"])}
            if shared:
                tmp = self.cache_path.with_name(f".{self.cache_path.name}.tmp{os.getpid()}")
                try:
                    tmp.write_text(json.dumps(cache, sort_keys=True))
                    os.replace(tmp, self.cache_path)
                except OSError:
                    tmp.unlink(missing_ok=True)  # kept in memory: this process asks no more than once an hour
        if failure is not None:
            raise failure
        return {h: cache["hours"][h] for h in wanted if h in cache["hours"]}

    def _request(self, first: str, last: str) -> dict[str, float]:
        import urllib.error
        import urllib.parse
        import urllib.request

        start = _hour_start(first)
        end = _hour_start(last) + timedelta(hours=1)
        query = urllib.parse.urlencode(
            {"zone": self.zone, "start": start.strftime("%Y-%m-%dT%H:%MZ"), "end": end.strftime("%Y-%m-%dT%H:%MZ")}
        )
        request = urllib.request.Request(
            f"{self.url}/carbon-intensity/past-range?{query}", headers={"auth-token": self._token}
        )
        self.requests += 1
        try:
            with _open_same_host(request, self.timeout_s) as response:
                raw = response.read()
        except ProviderError:
            raise
        except urllib.error.HTTPError as err:
            raise ProviderError(f"Electricity Maps answered {err.code} {err.reason} for zone {self.zone}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise ProviderError(f"Electricity Maps could not be reached at {self.url}: {err}") from None
        try:
            body = parse_json(raw)
        except JSONDepthError as err:
            raise ProviderError(f"Electricity Maps answered with JSON {err}: {raw[:80]!r}") from None
        except ValueError:
            raise ProviderError(f"Electricity Maps answered with something that is not JSON: {raw[:80]!r}") from None
        entries = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(entries, list):
            raise ProviderError(f"Electricity Maps answered without a list of data: {str(body)[:120]}")
        out: dict[str, float] = {}
        for entry in entries:  # an entry without a time or a plausible intensity is left out (the yearly figure)
            if not isinstance(entry, Mapping):
                continue
            value = _intensity(entry.get("carbonIntensity"))
            if value is None:
                continue
            try:
                out[_parse_time(str(entry.get("datetime")), "Electricity Maps")] = value
            except GridConfigError:
                continue
        if entries and not out:
            raise ProviderError(
                f"Electricity Maps answered {len(entries)} entries, none with a time and an intensity between 0 and "
                f"{MAX_INTENSITY_G_PER_KWH:g} gCO2e/kWh: {str(entries[0])[:120]}"
            )
        return out
