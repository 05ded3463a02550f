"""s3_key_format rendering."""

from __future__ import annotations

import re

from rillet.outputs.s3.key import KeyFormat, object_path

T = 1_577_836_800_500_000_000  # 2020-01-01T00:00:00.5Z


def test_fluent_bit_docs_example() -> None:
    fmt = KeyFormat("/$TAG[2]/$TAG[0]/%Y/%m/%d/%H/%M/%S/$UUID.gz", ".-")
    got = fmt.render("my_app_name-logs.prod", T, uuid="bgdHN1NM")
    assert got.key == "/prod/my_app_name/2020/01/01/00/00/00/bgdHN1NM.gz"
    assert got.put_key == got.key  # $UUID present: no suffix for PutObject


def test_default_format_and_put_object_suffix() -> None:
    fmt = KeyFormat("/fluent-bit-logs/$TAG/%Y/%m/%d/%H/%M/%S")
    got = fmt.render("kube.var.log", T)
    assert got.key == "/fluent-bit-logs/kube.var.log/2020/01/01/00/00/00"
    assert re.fullmatch(re.escape(got.key) + r"-[A-Za-z0-9]{8}", got.put_key)


def test_static_file_path_keeps_the_extension() -> None:
    got = KeyFormat("/$TAG/%H_%M_%S.gz", static_file_path=True).render("app", T)
    assert got.key == got.put_key == "/app/00_00_00.gz"


def test_index_uuid_and_out_of_range_tag_part() -> None:
    fmt = KeyFormat("logs/$TAG[0]/$TAG[5]/$INDEX-$UUID")
    assert fmt.has_index and fmt.has_uuid
    assert fmt.render("a.b", T, index=41, uuid="XXXXXXXX").key == "logs/a//41-XXXXXXXX"
    uuids = {fmt.render("a", T).key[-8:] for _ in range(20)}
    assert len(uuids) == 20 and all(re.fullmatch(r"[A-Za-z0-9]{8}", u) for u in uuids)


def test_time_conversions_do_not_touch_the_tag() -> None:
    got = KeyFormat("/$TAG/%Y", static_file_path=True).render("100%done.%Y", T)
    assert got.key == "/100%done.%Y/2020"


def test_custom_delimiters() -> None:
    fmt = KeyFormat("$TAG[1]/$TAG[3]", "_/", static_file_path=True)
    assert fmt.render("a_b/c_d", T).key == "b/d"


def test_object_path_strips_one_leading_slash() -> None:
    assert object_path("/logs/a") == "logs/a"
    assert object_path("logs/a") == "logs/a"
    assert object_path("//x") == "/x"
