"""The console's month reports (`sync.hub.services.month_reports`): a page per month for
the county, a township or a clinic, with server-drawn SVG charts (`sync.hub.charts`) of
the fund's spending by day and by month and of what each payer paid, the tables beside
them, and the same tables as CSV or `.xlsx`. Coordinators see their own township only.

The routes belong to the console's blueprint (its sign-in, headers, CSRF and error
pages); `sync.hub.app` imports this module so that they are registered with it.
"""

from datetime import datetime

from flask import Response, abort, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from sync.hub.charts import Bar, bar_chart
from sync.hub.console import PAYER_NAMES, chosen_township, console, render, signed_in, visible_slots
from sync.hub.console_auth import Viewer
from sync.hub.runtime import hub_runtime, hub_store
from sync.hub.services import month_reports
from sync.hub.services.month_reports import FUND, PAYERS, MonthReport

EXPORTS = ("clinics", "townships", "days", "items")
CLEARING_NAMES = {
    "draft": _l("statement drafted"),
    "agreed": _l("statement agreed"),
    "paid": _l("paid"),
    month_reports.NO_STATEMENT: _l("no statement yet"),
}
CHECK_NAMES = {
    "agrees": _l("the clinic agrees"),
    "disagrees": _l("the clinic disagrees"),
    "unchecked": _l("not checked by the clinic"),
}


def _month(now: datetime) -> str:
    """The month asked for in ?month=YYYY-MM, else this month (China time)."""
    month = request.args.get("month", "")
    try:
        month_reports.month_start(month)  # ValueError for 2026-13 or 0000-01 too
    except ValueError:
        return month_reports.month_of(now)
    return month


def _report(viewer: Viewer) -> MonthReport:
    township = chosen_township(viewer)
    slots = visible_slots(viewer, township)
    clinic = request.args.get("clinic") or None
    if clinic not in {s.clinic_code for s in slots}:
        clinic = None  # one this viewer may not see is not named on the page either
    return month_reports.month_report(
        hub_store(), slots, _month(hub_runtime().now()), township=township, clinic=clinic
    )


def charts(report: MonthReport) -> dict[str, Markup]:
    """The page's charts as inline SVG (the texts translated, the values in fen)."""
    scope = report.clinic or report.township or _("the county")
    by_day = bar_chart(
        [Bar(f"{d.day:02d}", f.net[FUND], d.isoformat()) for d, f in report.days],
        chart_id="chart-fund-by-day",
        title=_("Fund spending by day, %(month)s", month=report.month),
        description=_("Basic fund (hifp_pay) paid each day of %(month)s for %(scope)s, "
                      "reversals netted, in yuan.", month=report.month, scope=scope),
        total_label=_("Month total"),
    )  # fmt: skip
    by_month = bar_chart(
        [Bar(m[2:], f.net[FUND], m) for m, f in report.months],
        chart_id="chart-fund-by-month",
        title=_("Fund spending by month"),
        description=_("Basic fund (hifp_pay) paid each month up to %(month)s for %(scope)s, "
                      "reversals netted, in yuan.", month=report.month, scope=scope),
        total_label=_("%(count)d months", count=len(report.months)),
    )  # fmt: skip
    by_payer = bar_chart(
        [Bar(str(PAYER_NAMES[p]), report.total.net[p], f"{PAYER_NAMES[p]} {p}")
         for p in PAYERS[1:]],
        chart_id="chart-payers",
        title=_("Who paid, %(month)s", month=report.month),
        description=_("What each payer paid in %(month)s for %(scope)s, in yuan; "
                      "together they make the medical cost.", month=report.month, scope=scope),
        total_label=_("Medical cost"),
    )  # fmt: skip
    return {
        "fund_by_day": Markup(by_day),
        "fund_by_month": Markup(by_month),
        "payers": Markup(by_payer),
    }


@console.get("/reports")
@signed_in()
def month_report(viewer: Viewer):
    report = _report(viewer)
    store = hub_store()
    township = chosen_township(viewer)
    clinic_codes = sorted({s.clinic_code for s in visible_slots(viewer, township)})
    return render(
        "month_reports.html",
        report=report,
        charts=charts(report),
        townships=store.townships() if viewer.is_admin else [],
        clinic_codes=clinic_codes,
        exports=EXPORTS,
        clearing_names=CLEARING_NAMES,
        check_names=CHECK_NAMES,
        payers=PAYERS,
        fund=FUND,
    )


def _download(data: bytes | str, mimetype: str, name: str) -> Response:
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f"attachment; filename={name}"
    return response


@console.get("/reports/<what>.csv")
@signed_in()
def month_report_csv(viewer: Viewer, what: str):
    if what not in EXPORTS:
        abort(404)
    report = _report(viewer)
    text = month_reports.table_csv(month_reports.tables(report)[what])
    # With a byte order mark, so that Excel and WPS read the Chinese as UTF-8.
    return _download("\ufeff" + text, "text/csv", f"{what}-{report.month}.csv")


@console.get("/reports/report.xlsx")
@signed_in()
def month_report_xlsx(viewer: Viewer):
    report = _report(viewer)
    data = month_reports.tables_xlsx(month_reports.tables(report).values())
    return _download(
        data,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        f"report-{report.month}.xlsx",
    )
