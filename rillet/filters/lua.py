"""``lua`` filter: run a Lua function on each record (Fluent Bit's filter_lua), through
``lupa`` with LuaJIT, the Lua Fluent Bit embeds.

The function named by ``call`` is defined by ``script`` (a file) or ``code`` (inline) and is
called as Fluent Bit calls it: ``function(tag, timestamp, record)`` returning
``code, timestamp, record``:

- ``-1``: drop the record; ``0``: keep it unchanged; ``1``: replace the record and its time;
  ``2``: replace the record, keep its time. Any other code keeps the record (logged).
- With code 1 or 2 the returned record may be a list of records (a table of tables): each becomes
  a record with the same time.
- ``timestamp`` is seconds as a number (``sec.nsec``), or ``{sec=, nsec=}`` with
  ``time_as_table``.

Conversion follows Fluent Bit: a table whose keys are exactly 1..n (n > 0) is an array, any
other table (also an empty one) a map; ``type_int_key`` keys are converted to integers and
``type_array_key`` keys to arrays (empty ones too). Lua has no null: a null value disappears from
the table, unless ``enable_flb_null`` passes it as the ``flb_null`` value (and turns ``flb_null``
back into null). Lua tables have no key order, so neither has a record the script returns (as in
Fluent Bit).

One call into Lua per batch: the records are converted into one Lua table, a Lua loop calls the
function on each under ``pcall`` and the results come back together. A script error is counted
(``script_errors``), logged, and leaves that record unchanged; rillet always runs the function
protected (``protected_mode off`` is accepted: Fluent Bit would abort instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from rillet.config.options import Option, T
from rillet.engine.chunk import Batch, Body, body_dict
from rillet.engine.plugin import Filter, register

try:  # LuaJIT, as Fluent Bit; any Lua lupa ships otherwise
    from lupa import luajit21 as _lupa
except ImportError:  # pragma: no cover - depends on the lupa build
    from lupa import lua54 as _lupa  # type: ignore[no-redef]

_NULL_KEY = "\x00flb_null"

_BATCH_LOOP = """
function(cb, tag, times, records, n)
  local codes, outt, outr = {}, {}, {}
  local pcall = pcall
  for i = 1, n do
    local ok, code, ts, rec = pcall(cb, tag, times[i], records[i])
    if ok then
      codes[i] = code; outt[i] = ts; outr[i] = rec
    else
      codes[i] = false; outr[i] = tostring(code)
    end
  end
  return codes, outt, outr
end
"""


@register
class LuaFilter(Filter):
    name = "lua"
    description = "Lua Scripting Filter"
    options = (
        Option("script", T.STR, None, "path of the Lua script"),
        Option("call", T.STR, None, "name of the Lua function to call for each record"),
        Option("code", T.STR, None, "inline Lua code (instead of a script file)"),
        Option("time_as_table", T.BOOL, "false", "pass and take the time as {sec=, nsec=}"),
        Option("protected_mode", T.BOOL, "true", "run the function protected (rillet always "
               "does)"),
        Option("type_int_key", T.SLIST, None, "keys whose values become integers"),
        Option("type_array_key", T.SLIST, None, "keys whose tables are always arrays"),
        Option("enable_flb_null", T.BOOL, "false", "pass null values as flb_null instead of "
               "dropping them"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        o = self.opts
        if not o["call"]:
            raise ValueError("missing 'call': the Lua function to call")
        if o["code"]:
            source, origin = o["code"], "code"
        elif o["script"]:
            path = Path(o["script"])
            try:
                source = path.read_text()
            except OSError as exc:
                raise ValueError(f"script: cannot read '{path}': {exc.strerror}") from None
            origin = str(path)
        else:
            raise ValueError("no script or code defined: set 'script' or 'code'")
        self.lua = lua = _lupa.LuaRuntime(unpack_returned_tuples=True)
        self.null: Any = None
        if o["enable_flb_null"]:
            self.null = lua.eval("setmetatable({['\\0flb_null'] = true}, {__newindex = "
                                 "function() error('flb_null is read-only') end})")
            lua.globals().flb_null = self.null
        try:
            lua.execute(source)
        except _lupa.LuaError as exc:
            raise ValueError(f"{origin}: {exc}") from None
        func = lua.globals()[o["call"]]
        if _lupa.lua_type(func) != "function":
            raise ValueError(f"function {o['call']} is not found in {origin}")
        self.func = func
        self.loop = lua.eval(_BATCH_LOOP)
        self.table_type = type(lua.table())
        self.time_as_table: bool = o["time_as_table"]
        self.int_keys: list[str] = o["type_int_key"] or []
        self.array_keys: frozenset[str] = frozenset(o["type_array_key"] or [])

    # -- Python -> Lua --------------------------------------------------------------------------
    def _with_null(self, value: Any) -> Any:
        if value is None:
            return self.null
        if type(value) is dict:
            return {k: self._with_null(v) for k, v in value.items()}
        if type(value) is list:
            return [self._with_null(v) for v in value]
        return value

    # -- Lua -> Python --------------------------------------------------------------------------
    def to_python(self, value: Any) -> Any:
        if type(value) is not self.table_type:
            return value
        items = list(value.items())
        n = len(items)
        if n == 1 and items[0][0] == _NULL_KEY and self.null is not None:
            return None
        conv = self.to_python
        if n and all(type(k) is int for k, _ in items) and \
                sorted(k for k, _ in items) == list(range(1, n + 1)):
            return [conv(value[i]) for i in range(1, n + 1)]
        return {(k if type(k) is str else str(k)): conv(v) for k, v in items}

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        """Apply type_array_key and type_int_key to a record the script returned."""
        for key in self.array_keys:
            v = record.get(key)
            if type(v) is dict and not v:
                record[key] = []
        for key in self.int_keys:
            v = record.get(key)
            if type(v) is float:
                record[key] = int(v)
            elif type(v) is str:
                try:
                    record[key] = int(float(v))
                except ValueError:
                    pass
        return record

    def _time_in(self, ns: int) -> Any:
        if self.time_as_table:
            return {"sec": ns // 1_000_000_000, "nsec": ns % 1_000_000_000}
        return ns / 1e9

    def _time_out(self, value: Any, original: int) -> int:
        if type(value) is self.table_type:
            sec, nsec = value["sec"], value["nsec"]
            if isinstance(sec, int | float) and isinstance(nsec, int | float):
                return int(sec) * 1_000_000_000 + int(nsec)
            return original
        if isinstance(value, int | float) and not isinstance(value, bool):
            sec = int(value)
            return sec * 1_000_000_000 + int((value - sec) * 1e9)
        return original

    def filter(self, batch: Batch) -> Batch:
        n = len(batch.bodies)
        if not n:
            return batch
        lua = self.lua
        # Records go to Lua; a body that is not a JSON object passes unchanged (slot 0).
        records: list[dict[str, Any]] = []
        times_in: list[Any] = []
        slots: list[int] = []
        for t, body in zip(batch.times, batch.bodies, strict=True):
            try:
                record = body_dict(body)
            except orjson.JSONDecodeError:
                record = None
            if type(record) is not dict:
                slots.append(0)
                continue
            records.append(record if self.null is None else self._with_null(record))
            times_in.append(self._time_in(t))
            slots.append(len(records))
        if len(records) < n:
            self.counters.add("skipped_records", n - len(records))
            self.log.debug("%d records are not JSON objects: passed unchanged",
                           n - len(records))
        codes, times, results = self.loop(
            self.func, batch.tag, lua.table_from(times_in, recursive=True),
            lua.table_from(records, recursive=True), len(records))
        out_times: list[int] = []
        out_bodies: list[Body] = []
        errors: list[str] = []
        finish = self.finish
        fix = bool(self.int_keys or self.array_keys)
        for i, t, body in zip(slots, batch.times, batch.bodies, strict=True):
            if not i:
                out_times.append(t)
                out_bodies.append(body)
                continue
            code = codes[i]
            if code is False:
                errors.append(str(results[i]))
                out_times.append(t)
                out_bodies.append(body)
                continue
            if code == -1:
                continue
            if code not in (1, 2):
                if code != 0:
                    errors.append(f"unexpected Lua script return code {code!r}, original "
                                  "record will be kept")
                out_times.append(t)
                out_bodies.append(body)
                continue
            new_t = self._time_out(times[i], t) if code == 1 else t
            value = self.to_python(results[i])
            if type(value) is list and value and all(type(v) is dict for v in value):
                for item in value:
                    out_times.append(new_t)
                    out_bodies.append(finish(item) if fix else item)
                continue
            if type(value) is not dict:
                errors.append("the function returned no record (a table), original record "
                              "will be kept")
                out_times.append(t)
                out_bodies.append(body)
                continue
            out_times.append(new_t)
            out_bodies.append(finish(value) if fix else value)
        if errors:
            self.counters.add("script_errors", len(errors))
            self.log.warning("%d records kept unchanged after Lua errors; first: %s",
                             len(errors), errors[0])
        if len(out_bodies) != n:
            batch.size = batch.size * len(out_bodies) // n
        batch.times = out_times
        batch.bodies = out_bodies
        return batch
