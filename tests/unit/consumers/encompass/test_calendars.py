"""
Setting calendars and the Operation Encompass deadline: ``due_by`` is the setting's next session start.

The table runs on the synthetic partnership's sample calendar (``consumers/encompass/calendars_sample.toml``).
The dates it relies on, England (partnership defaults, 08:45):

- 2025-26: INSET 1-2 Sep, 3 Nov, 5 Jan, 1 Jun; half terms 27-31 Oct, 16-20 Feb, 25-29 May;
  spring term ends Wed 1 Apr, summer starts Mon 20 Apr; year ends Wed 22 Jul.
- 2026-27: INSET 1-2 Sep; October break 19-23 Oct; year ends Wed 21 Jul (an INSET day).
- Bank holidays: May Day Mon 4 May 2026.  Clocks change Sun 29 Mar 2026 and Sun 25 Oct 2026.

Settings: 900101 starts 08:55 and is closed Thu 7 May 2026 (polling station); 900102 starts
08:30, 09:40 on Wednesdays, extra INSET Fri 13 Feb 2026; 900105 is in Wales (08:50): spring
term ends Fri 27 Mar 2026, summer starts Mon 13 Apr, year ends Fri 17 Jul (20 Jul INSET),
half term 26-30 Oct 2026 (2 Nov INSET).  England and Wales share every bank holiday in these
years, so the England-versus-Wales cases differ by term dates.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safebus.consumers.encompass.calendar_files import load_calendars, parse_calendars, sample_calendars
from safebus.consumers.encompass.calendars import CalendarBook, CalendarError, CalendarHorizonError, SettingCalendar
from safebus.errors import ConfigError
from safebus.producers.synthetic import NOT_ONBOARDED_URNS, SCHOOLS

SAMPLE_PATH = Path(__file__).resolve().parents[4] / "consumers" / "encompass" / "calendars_sample.toml"
LONDON = ZoneInfo("Europe/London")
SAMPLE = load_calendars(SAMPLE_PATH)
DEFAULTS_URN = "900104"  # Tamsin Brook Junior: listed, keeps every partnership default
WALES_URN = "900105"


def _at(text: str) -> datetime:
    """An ISO 8601 instant with its UTC offset, so summer time is visible in the table."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, "table entries carry their offset"
    return moment


DUE_BY_TABLE = [
    # id, urn, incident recorded at, due by
    ("school-night", DEFAULTS_URN, "2025-11-18T21:30+00:00", "2025-11-19T08:45+00:00"),
    ("early-morning-before-start", DEFAULTS_URN, "2025-11-19T07:00+00:00", "2025-11-19T08:45+00:00"),
    ("one-minute-before-start", DEFAULTS_URN, "2025-11-19T08:44+00:00", "2025-11-19T08:45+00:00"),
    ("exactly-at-start-is-too-late-for-today", DEFAULTS_URN, "2025-11-19T08:45+00:00", "2025-11-20T08:45+00:00"),
    ("one-microsecond-before-start", DEFAULTS_URN, "2025-11-19T08:44:59.999999+00:00", "2025-11-19T08:45+00:00"),
    ("during-the-school-day", DEFAULTS_URN, "2025-11-19T09:00+00:00", "2025-11-20T08:45+00:00"),
    ("friday-evening-to-monday", DEFAULTS_URN, "2025-11-21T19:00+00:00", "2025-11-24T08:45+00:00"),
    ("saturday-night", DEFAULTS_URN, "2025-11-22T02:00+00:00", "2025-11-24T08:45+00:00"),
    ("sunday-one-minute-to-midnight", DEFAULTS_URN, "2025-11-23T23:59+00:00", "2025-11-24T08:45+00:00"),
    ("friday-before-may-day-bank-holiday", DEFAULTS_URN, "2026-05-01T18:00+01:00", "2026-05-05T08:45+01:00"),
    ("on-the-bank-holiday", DEFAULTS_URN, "2026-05-04T10:00+01:00", "2026-05-05T08:45+01:00"),
    ("end-of-half-term-to-inset-monday", DEFAULTS_URN, "2025-11-02T20:00+00:00", "2025-11-04T08:45+00:00"),
    ("summer-holiday-to-first-pupil-day", DEFAULTS_URN, "2026-08-10T12:00+01:00", "2026-09-03T08:45+01:00"),
    ("start-of-calendar-horizon", DEFAULTS_URN, "2025-08-01T00:00+01:00", "2025-09-03T08:45+01:00"),
    ("february-half-term", DEFAULTS_URN, "2026-02-18T12:00+00:00", "2026-02-23T08:45+00:00"),
    ("christmas-day", DEFAULTS_URN, "2025-12-25T12:00+00:00", "2026-01-06T08:45+00:00"),
    ("last-afternoon-of-autumn-term", DEFAULTS_URN, "2025-12-19T15:30+00:00", "2026-01-06T08:45+00:00"),
    ("last-day-of-the-year-after-start", DEFAULTS_URN, "2026-07-22T10:00+01:00", "2026-09-03T08:45+01:00"),
    ("dst-spring-forward-weekend", DEFAULTS_URN, "2026-03-27T18:00+00:00", "2026-03-30T08:45+01:00"),
    ("dst-spring-forward-just-before-the-change", DEFAULTS_URN, "2026-03-29T00:59+00:00", "2026-03-30T08:45+01:00"),
    ("dst-fall-back-first-0130", DEFAULTS_URN, "2026-10-25T01:30+01:00", "2026-10-26T08:45+00:00"),
    ("dst-fall-back-second-0130", DEFAULTS_URN, "2026-10-25T01:30+00:00", "2026-10-26T08:45+00:00"),
    ("dst-fall-back-in-half-term", DEFAULTS_URN, "2026-10-23T18:00+01:00", "2026-10-26T08:45+00:00"),
    ("utc-sunday-night-is-bst-monday-morning", DEFAULTS_URN, "2026-06-28T23:30+00:00", "2026-06-29T08:45+01:00"),
    ("bst-start-given-in-utc-is-not-yet-due", DEFAULTS_URN, "2026-06-29T07:44+00:00", "2026-06-29T08:45+01:00"),
    ("bst-start-given-in-utc-has-passed", DEFAULTS_URN, "2026-06-29T07:45+00:00", "2026-06-30T08:45+01:00"),
    ("england-october-break-ends", DEFAULTS_URN, "2026-10-23T18:00+01:00", "2026-10-26T08:45+00:00"),
    ("wales-october-half-term-then-inset", WALES_URN, "2026-10-23T18:00+01:00", "2026-11-03T08:50+00:00"),
    ("england-last-week-before-easter", DEFAULTS_URN, "2026-03-27T18:00+00:00", "2026-03-30T08:45+01:00"),
    ("wales-easter-holidays-start-earlier", WALES_URN, "2026-03-27T18:00+00:00", "2026-04-13T08:50+01:00"),
    ("england-term-runs-into-late-july", DEFAULTS_URN, "2026-07-17T18:00+01:00", "2026-07-20T08:45+01:00"),
    ("wales-year-ends-on-17-july", WALES_URN, "2026-07-17T18:00+01:00", "2026-09-03T08:50+01:00"),
    ("earlier-start-0830", "900102", "2025-11-17T08:35+00:00", "2025-11-18T08:30+00:00"),
    ("wednesday-late-start-still-ahead", "900102", "2025-11-19T09:00+00:00", "2025-11-19T09:40+00:00"),
    ("tuesday-night-to-wednesday-late-start", "900102", "2025-11-18T20:00+00:00", "2025-11-19T09:40+00:00"),
    ("wednesday-late-start-passed", "900102", "2025-11-19T09:40+00:00", "2025-11-20T08:30+00:00"),
    ("extra-inset-before-half-term", "900102", "2026-02-12T18:00+00:00", "2026-02-23T08:30+00:00"),
    ("no-extra-inset-at-default-setting", DEFAULTS_URN, "2026-02-12T18:00+00:00", "2026-02-13T08:45+00:00"),
    ("later-start-0855", "900101", "2025-11-19T08:50+00:00", "2025-11-19T08:55+00:00"),
    ("polling-day-closure", "900101", "2026-05-06T18:00+01:00", "2026-05-08T08:55+01:00"),
    ("sixth-form-0900", "900106", "2026-05-06T18:00+01:00", "2026-05-07T09:00+01:00"),
    ("unknown-setting-uses-partnership-defaults", NOT_ONBOARDED_URNS[0], "2025-11-21T19:00+00:00",
     "2025-11-24T08:45+00:00"),
]


@pytest.mark.parametrize(("urn", "incident", "expected"), [row[1:] for row in DUE_BY_TABLE],
                         ids=[row[0] for row in DUE_BY_TABLE])
def test_due_by(urn: str, incident: str, expected: str) -> None:
    """The Key Adult must know before the setting's next session start, on that setting's calendar."""
    due = SAMPLE.for_setting(urn).due_by(_at(incident))
    assert due == _at(expected)
    assert due.tzinfo is UTC


class TestSampleCalendars:
    def test_every_synthetic_school_has_its_own_calendar(self) -> None:
        """Each school in producers/synthetic.py resolves to its own entry, not the partnership fallback."""
        for _agency, urn, name, _ages in SCHOOLS:
            calendar = SAMPLE.for_setting(urn)
            assert calendar.resolution == "setting"
            assert calendar.name == name

    @pytest.mark.parametrize("urn", [DEFAULTS_URN, WALES_URN])
    @pytest.mark.parametrize("first_year", [2025, 2026])
    def test_a_maintained_school_opens_for_190_days(self, urn: str, first_year: int) -> None:
        """The sample is realistic: 195 days in term minus 5 INSET days leaves the statutory 190 pupil days."""
        calendar = SAMPLE.for_setting(urn)
        year = [d for d in calendar.school_days if date(first_year, 8, 1) <= d < date(first_year + 1, 8, 1)]
        assert len(year) == 190
        assert sum(1 for d in calendar.inset_days if date(first_year, 8, 1) <= d < date(first_year + 1, 8, 1)) == 5

    def test_sample_calendars_is_packaged(self) -> None:
        """`sample_calendars()` reads the same file through the installed package (needs *.toml package data)."""
        assert sample_calendars().version == SAMPLE.version

    def test_every_calendar_records_the_book_version(self) -> None:
        """Audit facts can name the calendar version from the calendar that computed the deadline."""
        assert SAMPLE.version.startswith("sha256:")
        assert len(SAMPLE.version) == len("sha256:") + 64
        assert {SAMPLE.for_setting(u).calendar_version for u in (*SAMPLE.urns(), "999999")} == {SAMPLE.version}

    def test_unknown_setting_is_flagged_as_partnership_default(self) -> None:
        """A URN the file does not list gets the defaults, marked so the deadline is known to be an estimate."""
        calendar = SAMPLE.for_setting("900901")
        assert calendar.resolution == "partnership-default"
        assert calendar.urn == "900901"
        assert calendar.school_days == SAMPLE.for_setting(DEFAULTS_URN).school_days
        assert SAMPLE.for_setting(DEFAULTS_URN).resolution == "setting"


class TestVersion:
    def test_the_same_content_gives_the_same_version(self) -> None:
        """The version is a content digest, independent of where the file was read from."""
        assert parse_calendars(SAMPLE_PATH.read_bytes(), source="elsewhere").version == SAMPLE.version

    def test_any_change_gives_a_new_version(self) -> None:
        """Changing a date changes the version, so audit records distinguish the two calendars."""
        changed = SAMPLE_PATH.read_text().replace('session_start = "08:55"', 'session_start = "08:50"')
        assert parse_calendars(changed).version != SAMPLE.version


class TestFirstDayBack:
    @pytest.mark.parametrize(
        ("at", "expected"),
        [
            ("2025-11-19T21:00+00:00", date(2025, 11, 19)),  # a school day, even after school
            ("2025-11-22T10:00+00:00", date(2025, 11, 24)),  # Saturday
            ("2026-06-26T23:30+00:00", date(2026, 6, 29)),  # Friday in UTC, already Saturday in London
            ("2025-12-24T10:00+00:00", date(2026, 1, 6)),  # Christmas holiday, back after the INSET day
            ("2026-05-04T10:00+01:00", date(2026, 5, 5)),  # bank holiday
            ("2025-11-03T10:00+00:00", date(2025, 11, 4)),  # INSET day: pupils are not there
        ],
        ids=["school-day", "weekend", "local-date-not-utc-date", "christmas", "bank-holiday", "inset-day"],
    )
    def test_first_day_back(self, at: str, expected: date) -> None:
        """A notification sent outside a school day is surfaced again on the next school day."""
        assert SAMPLE.for_setting(DEFAULTS_URN).first_day_back(_at(at)) == expected

    def test_first_day_back_follows_the_setting(self) -> None:
        """The Welsh setting's Easter holiday is longer, so its first day back is later."""
        at = _at("2026-04-02T12:00+01:00")
        assert SAMPLE.for_setting(DEFAULTS_URN).first_day_back(at) == date(2026, 4, 20)
        assert SAMPLE.for_setting(WALES_URN).first_day_back(at) == date(2026, 4, 13)


class TestSchoolDays:
    def test_five_school_days_within_a_week(self) -> None:
        """A child-protection file for a move on a Thursday is due the next Thursday."""
        assert SAMPLE.for_setting(DEFAULTS_URN).add_school_days(date(2025, 11, 20), 5) == date(2025, 11, 27)

    def test_five_school_days_across_half_term_and_inset(self) -> None:
        """Half term and the INSET day after it do not count."""
        # Thu 23, Fri 24 Oct, [half term, Mon 3 Nov INSET], Tue 4, Wed 5, Thu 6 Nov
        assert SAMPLE.for_setting(DEFAULTS_URN).add_school_days(date(2025, 10, 22), 5) == date(2025, 11, 6)

    def test_counting_starts_after_a_non_school_day(self) -> None:
        """A move recorded on a Saturday counts from Monday."""
        assert SAMPLE.for_setting(DEFAULTS_URN).add_school_days(date(2025, 11, 22), 1) == date(2025, 11, 24)

    def test_zero_school_days_is_the_same_day(self) -> None:
        """Adding nothing changes nothing."""
        assert SAMPLE.for_setting(DEFAULTS_URN).add_school_days(date(2025, 11, 22), 0) == date(2025, 11, 22)

    def test_negative_counts_are_refused(self) -> None:
        """A negative count is a programming error, not a date in the past."""
        with pytest.raises(ValueError, match="negative"):
            SAMPLE.for_setting(DEFAULTS_URN).add_school_days(date(2025, 11, 22), -1)

    def test_school_days_between(self) -> None:
        """The count excludes the start and includes the end; Christmas, INSET and weekends do not count."""
        calendar = SAMPLE.for_setting(DEFAULTS_URN)
        assert calendar.school_days_between(date(2025, 12, 18), date(2026, 1, 7)) == 3  # 19 Dec, 6 and 7 Jan
        assert calendar.school_days_between(date(2025, 11, 24), date(2025, 11, 24)) == 0
        with pytest.raises(ValueError, match="before start"):
            calendar.school_days_between(date(2025, 11, 24), date(2025, 11, 21))

    def test_is_school_day(self) -> None:
        """Weekdays in term are school days; weekends, INSET days, bank holidays and closures are not."""
        hollowmere = SAMPLE.for_setting("900101")
        assert hollowmere.is_school_day(date(2026, 5, 6))
        assert not hollowmere.is_school_day(date(2026, 5, 7))  # polling station
        assert SAMPLE.for_setting(DEFAULTS_URN).is_school_day(date(2026, 5, 7))
        assert not hollowmere.is_school_day(date(2026, 5, 4))  # May Day
        assert not hollowmere.is_school_day(date(2026, 5, 9))  # Saturday
        assert not hollowmere.is_school_day(date(2025, 9, 1))  # INSET


class TestHorizon:
    def test_no_school_day_after_the_last_term(self) -> None:
        """After the last known term the deadline is unknown: refuse rather than guess."""
        calendar = SAMPLE.for_setting(DEFAULTS_URN)
        with pytest.raises(CalendarHorizonError, match="no school day after"):
            calendar.due_by(_at("2027-07-20T10:00+01:00"))
        with pytest.raises(CalendarHorizonError, match="no school day on or after"):
            calendar.first_day_back(_at("2027-07-25T10:00+01:00"))

    def test_before_the_first_academic_year(self) -> None:
        """Before 1 August of the first academic year the calendar knows nothing (the summer term may be on)."""
        with pytest.raises(CalendarHorizonError, match="outside the calendar's academic years 2025-26, 2026-27"):
            SAMPLE.for_setting(DEFAULTS_URN).due_by(_at("2025-07-31T23:59+01:00"))

    def test_after_the_last_academic_year(self) -> None:
        """Dates after 31 July of the last academic year are outside the horizon, for every query."""
        calendar = SAMPLE.for_setting(DEFAULTS_URN)
        with pytest.raises(CalendarHorizonError):
            calendar.is_school_day(date(2027, 8, 1))
        with pytest.raises(CalendarHorizonError):
            calendar.add_school_days(date(2027, 7, 1), 30)
        with pytest.raises(CalendarHorizonError):
            calendar.school_days_between(date(2027, 7, 1), date(2027, 9, 30))

    def test_horizon_errors_are_config_errors_with_a_remedy(self) -> None:
        """The CLI's ConfigError handling covers them, and the diagnostics say what to add."""
        with pytest.raises(ConfigError) as caught:
            SAMPLE.for_setting(DEFAULTS_URN).due_by(_at("2027-07-20T10:00+01:00"))
        assert isinstance(caught.value, CalendarHorizonError)
        assert "next academic year" in caught.value.diagnostics()

    def test_naive_datetimes_are_refused(self) -> None:
        """A naive time has no local date; guessing could move a deadline by a day."""
        with pytest.raises(ValueError, match="timezone-aware"):
            SAMPLE.for_setting(DEFAULTS_URN).due_by(datetime(2025, 11, 19, 7, 0))


# -- loading errors ----------------------------------------------------------------

_BASE = """
format = 1

[partnership]
nation = "england"
academic_years = ["2025-26"]
session_start = "08:45"
terms = [
    { name = "autumn", start = 2025-09-01, end = 2025-12-19 },
    { name = "spring", start = 2026-01-05, end = 2026-03-27 },
    { name = "summer", start = 2026-04-13, end = 2026-07-22 },
]
inset_days = [2025-09-01]
"""


def _with_setting(body: str) -> str:
    return _BASE + '\n[[setting]]\nurn = "900102"\n' + body


_LOADING_ERRORS = [
    # (file text, what the error must say)
    pytest.param(_BASE.replace("session_start", "sesion_start"),
                 r"\[partnership\]: sesion_start: unknown key", id="unknown-partnership-key"),
    pytest.param(_with_setting('start = "08:30"'),
                 r"setting 900102: start: unknown key", id="unknown-setting-key"),
    pytest.param(_with_setting('weekday_session_starts = { saturday = "09:00" }'),
                 r"setting 900102: weekday_session_starts\.saturday: unknown key", id="unknown-weekday"),
    pytest.param(_BASE.replace("end = 2025-12-19", "end = 2025-08-19"),
                 r"\[partnership\]: terms\.0: term 'autumn' \(2025-09-01\.\.2025-08-19\): end 2025-08-19 is before",
                 id="term-ends-before-start"),
    pytest.param(_with_setting("terms = [{ start = 2025-09-01, end = 2025-12-19 },"
                               " { start = 2025-12-01, end = 2026-03-27 }, { start = 2026-04-13, end = 2026-07-22 }]"),
                 r"setting 900102: terms: 2025-12-01\.\.2026-03-27 overlaps 2025-09-01\.\.2025-12-19",
                 id="overlapping-terms"),
    pytest.param(_BASE.replace("start = 2026-01-05", "start = 2025-12-19"),
                 r"\[partnership\]: terms: 'spring' \(2025-12-19\.\.2026-03-27\) overlaps 'autumn'",
                 id="terms-sharing-a-day"),
    pytest.param(_BASE.replace('"08:45"', '"8:45"'),
                 r"\[partnership\]: session_start: Input should be in a valid time", id="time-without-leading-zero"),
    pytest.param(_with_setting('session_start = "20:45"'),
                 r"setting 900102: session_start: .*outside 06:00-13:00", id="evening-start-typo"),
    pytest.param(_with_setting('session_start = "08:45+01:00"'),
                 r"setting 900102: session_start: .*wall-clock", id="start-with-offset"),
    pytest.param(_with_setting('session_start = "25:00"'),
                 r"setting 900102: session_start: .*hour value is outside", id="impossible-time"),
    pytest.param(_with_setting("inset_days = [2025-09-06]"),
                 r"setting 900102: inset_days: 2025-09-06 is a Saturday", id="inset-on-saturday"),
    pytest.param(_with_setting("inset_days = [2025-12-25]"),
                 r"setting 900102: inset_days: 2025-12-25 is a bank holiday in England", id="inset-on-bank-holiday"),
    pytest.param(_with_setting("extra_inset_days = [2025-08-04]"),
                 r"setting 900102: inset_days: 2025-08-04 is not in any term", id="extra-inset-out-of-term"),
    pytest.param(_with_setting("extra_inset_days = [2025-09-01]"),
                 r"setting 900102: extra_inset_days: 2025-09-01 already an INSET day", id="extra-inset-repeats-inset"),
    pytest.param(_with_setting("terms = [{ start = 2025-09-02, end = 2026-07-22 }]"),
                 r"setting 900102: inset_days: 2025-09-01 is not in any term \(inherited from \[partnership\]",
                 id="inherited-inset-out-of-own-terms"),
    pytest.param(_with_setting('nation = "wales"'),
                 r"setting 900102: terms, inset_days: required because the setting is in Wales",
                 id="welsh-setting-without-terms"),
    pytest.param(_with_setting("") + '\n[[setting]]\nurn = "900102"\n',
                 r"setting 900102: urn: listed more than once", id="duplicate-urn"),
    pytest.param(_with_setting("").replace('"900102"', '"12345"'),
                 r"setting 12345: urn: String should match pattern", id="bad-urn"),
    pytest.param(_BASE.replace('["2025-26"]', '["2025-26", "2027-28"]'),
                 r"\[partnership\]: academic_years: .*consecutive", id="academic-years-gap"),
    pytest.param(_BASE.replace('["2025-26"]', '["2025-27"]'),
                 r"academic year '2025-27' should look like '2025-26'", id="academic-year-label"),
    pytest.param(_BASE.replace('["2025-26"]', '["2025-26", "2026-27"]'),
                 r"\[partnership\]: terms: academic year 2026-27 has no terms", id="academic-year-without-terms"),
    pytest.param(_BASE.replace("end = 2026-07-22", "end = 2026-08-03"),
                 r"terms: 'summer' \(2026-04-13\.\.2026-08-03\) is outside academic years 2025-26",
                 id="term-outside-horizon"),
    pytest.param(_BASE.replace('nation = "england"', 'nation = "england"\ntimezone = "Europe/Lundun"'),
                 r"\[partnership\]: timezone: unknown time zone 'Europe/Lundun'", id="unknown-time-zone"),
    pytest.param(_BASE.replace('nation = "england"', 'nation = "scotland"'),
                 r"\[partnership\]: nation: Input should be", id="unsupported-nation"),
    pytest.param(_BASE.replace("format = 1", "format = 2"),
                 r"format: Input should be 1", id="unknown-format"),
    pytest.param(_BASE.replace("format = 1", 'format = 1\nowner = "x"'),
                 r"owner: unknown key", id="unknown-top-level-key"),
    pytest.param(_BASE + "[partnership.extra]\n",
                 r"\[partnership\]: extra: unknown key", id="unknown-partnership-table"),
    pytest.param(_BASE.replace("[partnership]", "[partnership"),
                 r"not valid TOML", id="toml-syntax"),
    pytest.param(_with_setting("closures = [2027-09-01]"),
                 r"setting 900102: closures: 2027-09-01 is outside", id="closure-outside-horizon"),
]


class TestLoadingErrors:
    def test_the_base_file_is_valid(self) -> None:
        """The fixture every error case edits is itself valid, so each case fails for its own reason."""
        book = parse_calendars(_with_setting('session_start = "08:30"'))
        assert book.for_setting("900102").session_start.isoformat() == "08:30:00"
        assert book.for_setting("900102").inset_days == (date(2025, 9, 1),)

    @pytest.mark.parametrize(("text", "message"), _LOADING_ERRORS)
    def test_invalid_files_are_refused_naming_setting_and_field(self, text: str, message: str) -> None:
        """A wrong calendar stops loading with a message that says where and what, never a silent default."""
        with pytest.raises(CalendarError, match=message):
            parse_calendars(text)

    def test_every_problem_is_reported_at_once(self) -> None:
        """One run shows every problem, so a calendar editor does not fix them one reload at a time."""
        text = _with_setting('session_start = "20:45"\n') + '\n[[setting]]\nurn = "900103"\nsesion_start = "09:00"\n'
        with pytest.raises(CalendarError) as caught:
            parse_calendars(text, source="northdale.toml")
        assert caught.value.problems == (
            "setting 900102: session_start: session start 20:45 is outside 06:00-13:00",
            "setting 900103: sesion_start: unknown key",
        )
        assert "northdale.toml" in str(caught.value)

    def test_a_missing_file_is_a_calendar_error(self, tmp_path: Path) -> None:
        """An unreadable file is reported as a calendar problem, not a bare OSError."""
        with pytest.raises(CalendarError, match="cannot be read"):
            load_calendars(tmp_path / "calendars.toml")

    def test_a_welsh_setting_gets_welsh_bank_holidays(self) -> None:
        """The nation selects the bank-holiday table (England's and Wales's agree in these years)."""
        book = parse_calendars(_with_setting('nation = "wales"\ninset_days = []\n'
                                             'terms = [{ start = 2025-09-01, end = 2026-07-17 }]'))
        welsh = book.for_setting("900102")
        assert welsh.nation == "wales"
        assert date(2025, 12, 25) in welsh.bank_holidays
        assert not welsh.is_school_day(date(2026, 5, 4))  # May Day
        assert welsh.is_school_day(date(2026, 5, 5))


# -- properties ---------------------------------------------------------------------

_URNS = (*SAMPLE.urns(), NOT_ONBOARDED_URNS[0])
# The last pupil day of every sample calendar is Tue 20 Jul 2027; before then a next session exists.
_MOMENTS = st.datetimes(min_value=datetime(2025, 8, 1, 0, 0), max_value=datetime(2027, 7, 19, 22, 0),
                        timezones=st.just(UTC))


def _calendar(urn: str) -> SettingCalendar:
    return SAMPLE.for_setting(urn)


@settings(max_examples=300, deadline=None)
@given(urn=st.sampled_from(_URNS), incident=_MOMENTS)
def test_due_by_is_the_first_session_start_after_the_incident(urn: str, incident: datetime) -> None:
    """due_by(t) is after t, is a session start on a school day, and no session start lies between them."""
    calendar = _calendar(urn)
    due = calendar.due_by(incident)
    assert due > incident
    due_day = due.astimezone(calendar.tz).date()
    assert calendar.is_school_day(due_day)
    assert due == calendar.session_start_on(due_day)
    assert due.astimezone(LONDON).time() == calendar.session_start_time(due_day)
    day = incident.astimezone(calendar.tz).date()
    while day < due_day:  # every earlier session start (none strictly between incident and due) had passed
        if calendar.is_school_day(day):
            assert calendar.session_start_on(day) <= incident
        day += timedelta(days=1)
    assert calendar.first_day_back(incident) <= due_day


@settings(max_examples=100, deadline=None)
@given(incident=_MOMENTS, offset_hours=st.integers(min_value=-12, max_value=14))
def test_due_by_depends_on_the_instant_not_its_offset(incident: datetime, offset_hours: int) -> None:
    """The same instant written in any UTC offset has the same deadline."""
    calendar = _calendar(DEFAULTS_URN)
    shifted = incident.astimezone(timezone(timedelta(hours=offset_hours)))
    assert calendar.due_by(shifted) == calendar.due_by(incident)


@settings(max_examples=200, deadline=None)
@given(urn=st.sampled_from(_URNS), start=st.dates(min_value=date(2025, 8, 1), max_value=date(2027, 6, 20)),
       count=st.integers(min_value=0, max_value=15))
def test_school_days_between_inverts_add_school_days(urn: str, start: date, count: int) -> None:
    """Counting the school days up to add_school_days(d, n) gives n back, and the result is a school day."""
    calendar = _calendar(urn)
    end = calendar.add_school_days(start, count)
    assert calendar.school_days_between(start, end) == count
    if count:
        assert calendar.is_school_day(end)
        assert calendar.school_days_between(start, end - timedelta(days=1)) == count - 1


def test_book_type() -> None:
    """The loader returns a CalendarBook whose settings are read-only."""
    assert isinstance(SAMPLE, CalendarBook)
    with pytest.raises(TypeError):
        SAMPLE.settings["900999"] = SAMPLE.default_calendar  # type: ignore[index]


def test_a_broken_partnership_is_reported_once() -> None:
    """Problems in the defaults are reported for [partnership], not repeated for each setting that inherits them."""
    text = _with_setting("").replace("start = 2026-01-05", "start = 2025-12-19")
    with pytest.raises(CalendarError) as caught:
        parse_calendars(text)
    assert all(problem.startswith("[partnership]") for problem in caught.value.problems)
    assert len(caught.value.problems) == 1
