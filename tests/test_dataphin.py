from __future__ import annotations

from datetime import datetime

import pytest

from backfill.sql.dataphin import SchedParam, SchedParamError, evaluate, find_params, substitute

# The DataWorks documentation's example: the run on 2018-01-10 processes business date 2018-01-09.
BIZ = datetime(2018, 1, 9)
CYC = datetime(2018, 1, 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${yyyymmdd}", "20180109"),
        ("$[yyyymmdd]", "20180110"),
        ("${yyyymmdd -7}", "20180102"),
        ("${yyyymmdd-7}", "20180102"),
        ("${yyyy-mm -1}", "2017-12"),
        ("${yyyy-mm-dd}", "2018-01-09"),
        ("$[hh24miss-1/24]", "230000"),
        ("$[add_months(yyyymmdd,-1)]", "20171210"),
        ("${bizdate}", "20180109"),
        ("$[yyyymmdd-1]", "20180109"),
    ],
)
def test_documented_examples(text: str, expected: str) -> None:
    assert substitute(text, BIZ, CYC) == expected


def test_hour_offset_crosses_into_the_previous_day() -> None:
    assert substitute("$[yyyy-mm-dd hh24:mi:ss-1/24]", BIZ, CYC) == "2018-01-09 23:00:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${yyyymmdd+1}", "20180110"),
        ("${yyyymmdd + 3}", "20180112"),
        ("${yyyymm}", "201801"),
        ("${yyyy}", "2018"),
        ("${yy}", "18"),
        ("${yyyy-1}", "2017"),
        ("${yyyy -2}", "2016"),
        ("${yyyymm-13}", "201612"),
        ("${yyyymmdd-7*2}", "20171226"),
        ("${yyyymmdd - 7 * 1}", "20180102"),
        ("$[yyyymmdd-7*1]", "20180103"),
        ("$[add_months(yyyymmdd,1)]", "20180210"),
        ("$[add_months(yyyymmdd,-12*2)]", "20160110"),
        ("$[add_months( yyyy-mm , -1 )]", "2017-12"),
        ("$[yyyymmddhh24miss]", "20180110000000"),
        ("$[yyyy-mm-dd hh24:mi:ss]", "2018-01-10 00:00:00"),
        ("${yyyy/mm/dd}", "2018/01/09"),
        ("${yyyy年mm月dd日}", "2018年01月09日"),
        ("$[hh24mi-30/24/60]", "2330"),
        ("$[hh24:mi:ss+90/24/60]", "01:30:00"),
        ("$bizdate", "20180109"),
        ("$cyctime", "20180110000000"),
        ("$gmtdate", "20180110"),
    ],
)
def test_more_forms(text: str, expected: str) -> None:
    assert substitute(text, BIZ, CYC) == expected


@pytest.mark.parametrize(
    ("text", "bizdate", "cyctime", "expected"),
    [
        # end-of-month clamping, like Oracle add_months
        ("$[add_months(yyyymmdd,-1)]", datetime(2018, 3, 30), datetime(2018, 3, 31), "20180228"),
        ("$[add_months(yyyymmdd,-1)]", datetime(2020, 3, 30), datetime(2020, 3, 31), "20200229"),
        ("$[add_months(yyyy-mm-dd,1)]", datetime(2018, 1, 30), datetime(2018, 1, 31), "2018-02-28"),
        ("${yyyymm-1}", datetime(2018, 3, 31), datetime(2018, 4, 1), "201802"),
        ("${yyyy-1}", datetime(2020, 2, 29), datetime(2020, 3, 1), "2019"),
        ("${yyyymmdd-1}", datetime(2018, 3, 1), datetime(2018, 3, 2), "20180228"),
    ],
)
def test_month_ends(text: str, bizdate: datetime, cyctime: datetime, expected: str) -> None:
    assert substitute(text, bizdate, cyctime) == expected


def test_hourly_table() -> None:
    # an hourly table's data timestamp 2018-01-09 13:00 is scheduled at 14:00
    biz, cyc = datetime(2018, 1, 9, 13), datetime(2018, 1, 9, 14)
    assert substitute("${yyyymmddhh24}", biz, cyc) == "2018010913"
    assert substitute("$[yyyymmddhh24]", biz, cyc) == "2018010914"
    assert substitute("$[hh24-1/24]", biz, cyc) == "13"
    assert substitute("$[yyyymmdd hh24:mi-2/24]", biz, cyc) == "20180109 12:00"
    assert substitute("$[hh24mi-15/24/60]", biz, cyc) == "1345"
    assert substitute("$cyctime", biz, cyc) == "20180109140000"


def test_hourly_table_across_midnight() -> None:
    biz, cyc = datetime(2018, 1, 9, 23), datetime(2018, 1, 10, 0)
    assert substitute("${yyyymmdd}/${hh24}", biz, cyc) == "20180109/23"
    assert substitute("$[yyyymmdd]/$[hh24]", biz, cyc) == "20180110/00"
    assert substitute("$[yyyymmddhh24-1/24]", biz, cyc) == "2018010923"


def test_find_params_positions_and_fields() -> None:
    text = "select * from t where ds = '${yyyymmdd-7}' and h = '$[hh24-1/24]' and x = $bizdate"
    params = find_params(text)
    assert [text[p.start : p.end] for p in params] == ["${yyyymmdd-7}", "$[hh24-1/24]", "$bizdate"]
    assert params[0] == SchedParam(28, 41, "${yyyymmdd-7}", "biz", "yyyymmdd", -7, "days")
    assert params[1] == SchedParam(52, 64, "$[hh24-1/24]", "cyc", "hh24", -1, "hours")
    assert params[2] == SchedParam(74, 82, "$bizdate", "biz", "yyyymmdd", 0, "days")


@pytest.mark.parametrize(
    ("text", "base", "fmt", "amount", "unit"),
    [
        ("${yyyymmdd}", "biz", "yyyymmdd", 0, "days"),
        ("${yyyy-mm -1}", "biz", "yyyy-mm", -1, "months"),
        ("${yyyy+2}", "biz", "yyyy", 2, "years"),
        ("${yyyymmdd-7*3}", "biz", "yyyymmdd", -21, "days"),
        ("${bizdate}", "biz", "yyyymmdd", 0, "days"),
        ("$[yyyymmdd]", "cyc", "yyyymmdd", 0, "days"),
        ("$[hh24miss-1/24]", "cyc", "hh24miss", -1, "hours"),
        ("$[hh24mi-30/24/60]", "cyc", "hh24mi", -30, "minutes"),
        ("$[add_months(yyyymmdd,-1)]", "cyc", "yyyymmdd", -1, "months"),
        ("$[ADD_MONTHS(yyyymm, 2)]", "cyc", "yyyymm", 2, "months"),
        ("$cyctime", "cyc", "yyyymmddhh24miss", 0, "days"),
        ("$gmtdate", "cyc", "yyyymmdd", 0, "days"),
    ],
)
def test_parsed_fields(text: str, base: str, fmt: str, amount: int, unit: str) -> None:
    [p] = find_params(text)
    assert (p.start, p.end, p.text) == (0, len(text), text)
    assert (p.base, p.fmt, p.amount, p.unit) == (base, fmt, amount, unit)


def test_evaluate_uses_the_right_clock() -> None:
    [biz_p, cyc_p] = find_params("${yyyymmdd} $[yyyymmdd]")
    assert evaluate(biz_p, datetime(2001, 2, 3), datetime(2030, 4, 5)) == "20010203"
    assert evaluate(cyc_p, datetime(2001, 2, 3), datetime(2030, 4, 5)) == "20300405"


@pytest.mark.parametrize(
    "text",
    [
        "select ${{ x }} from t",
        "{% if a %}${% endif %}",
        "${# comment #}",
        "select $1, $2 from t",
        "select '$' || x, 'US$ 5', price$ from t",
        "select json_extract(j, '$[0]'), j->'$[*]', '$[#-1]', '$[ 1]' from t",
        "select '$.a[0]' from t",
        "select $bizdates, $bizdate_x, $cyctime1 from t",
        "select $$ body $$",
    ],
)
def test_not_parameters(text: str) -> None:
    assert find_params(text) == []
    assert substitute(text, BIZ, CYC) == text


def test_bizdate_does_not_match_inside_braces() -> None:
    params = find_params("${bizdate} $bizdate")
    assert [(p.start, p.text) for p in params] == [(0, "${bizdate}"), (11, "$bizdate")]


def test_jinja_next_to_parameters() -> None:
    text = "select {{ ref('a') }} where ds = '${yyyy-mm-dd}' {% if x %}and ${{ y }}{% endif %}"
    assert substitute(text, BIZ, CYC) == (
        "select {{ ref('a') }} where ds = '2018-01-09' {% if x %}and ${{ y }}{% endif %}"
    )


def _error(text: str) -> SchedParamError:
    with pytest.raises(SchedParamError) as info:
        find_params(text)
    return info.value


def test_error_bad_offset() -> None:
    err = _error("where ds = '${yyyymmdd-x}'")
    assert err.offset == 12
    assert err.message == (
        'bad offset "-x" in ${yyyymmdd-x}: ${...} takes -N or +N with a whole number N (days, months or '
        "years by the format) or -7*N for weeks; for hours or minutes use $[hh24miss-N/24] or "
        "$[hh24miss-N/24/60]"
    )
    assert str(err) == err.message
    assert isinstance(err, ValueError)


def test_error_unknown_format() -> None:
    err = _error("select ${abc}")
    assert err.offset == 7
    assert err.message == (
        'unknown format "abc" in ${abc}: format tokens are yyyy, yy, mm (month), dd, hh24, mi (minute), ss, '
        "joined by separators; accepted: ${yyyymmdd}, ${yyyy-mm-dd}, ${yyyymmdd-N}, ${yyyymmdd+N}, "
        "${yyyymmdd-7*N}, ${yyyy-mm-N} (months), ${yyyy-N} (years), ${bizdate}"
    )


def test_error_unknown_bracket_format() -> None:
    err = _error("$[abc]")
    assert err.offset == 0
    assert err.message == (
        'unknown format "abc" in $[abc]: format tokens are yyyy, yy, mm (month), dd, hh24, mi (minute), ss, '
        "joined by separators; accepted: $[yyyymmdd], $[yyyymmdd-N] (days), $[hh24miss-N/24] (hours), "
        "$[hh24miss-N/24/60] (minutes), $[add_months(yyyymmdd,-N)]"
    )


def test_error_unclosed_brace() -> None:
    err = _error("select 1\nwhere ds = ${yyyymmdd\nand x = 1}")
    assert err.offset == 20
    assert err.message == (
        'unclosed scheduling parameter "${yyyymmdd": close it with "}" on the same line, e.g. ${yyyymmdd}'
    )


def test_error_unclosed_bracket_at_end() -> None:
    err = _error("where ds = $[yyyymmdd")
    assert err.offset == 11
    assert err.message == (
        'unclosed scheduling parameter "$[yyyymmdd": close it with "]" on the same line, e.g. $[yyyymmdd]'
    )


def test_error_bad_divisor() -> None:
    err = _error("$[hh24-1/12]")
    assert err.message == (
        "bad divisor in $[hh24-1/12]: write -N/24 for hours or -N/24/60 for minutes; accepted: "
        "$[yyyymmdd], $[yyyymmdd-N] (days), $[hh24miss-N/24] (hours), $[hh24miss-N/24/60] (minutes), "
        "$[add_months(yyyymmdd,-N)]"
    )


def test_error_bad_add_months() -> None:
    err = _error("x $[add_months(yyyymmdd)]")
    assert err.offset == 2
    assert err.message == (
        "bad add_months call $[add_months(yyyymmdd)]: write $[add_months(yyyymmdd,-N)] or "
        "$[add_months(yyyymmdd,N)] with a whole number N; format tokens are yyyy, yy, mm (month), dd, hh24, "
        "mi (minute), ss, joined by separators"
    )


def test_error_add_months_in_braces() -> None:
    err = _error("${add_months(yyyymmdd,-1)}")
    assert err.message == (
        "add_months works only in $[...], not in ${add_months(yyyymmdd,-1)}: "
        "write $[add_months(yyyymmdd,-N)] (reads the scheduled time)"
    )


def test_error_hours_in_braces() -> None:
    err = _error("${yyyymmdd-1/24}")
    assert err.message.startswith('bad offset "-1/24" in ${yyyymmdd-1/24}: ')
    err = _error("${hh24-1}")
    assert err.message == (
        "an offset in ${hh24-1} needs a date part (dd, mm or yyyy) in the format to count in; "
        "for hours or minutes use $[hh24miss-N/24] or $[hh24miss-N/24/60]"
    )


@pytest.mark.parametrize(
    "text",
    ["${}", "${yyyymmdd-}", "${yyyymmdd-1.5}", "${YYYYMMDD}", "${yyyymmddx}", "$[yyyymmdd-x]", "${ds}"],
)
def test_other_bad_forms_raise(text: str) -> None:
    err = _error("-- " + text)
    assert err.offset == 3
    assert text in err.message


def test_error_is_the_first_bad_parameter() -> None:
    err = _error("${yyyymmdd} ${bad} ${worse}")
    assert err.offset == 12
