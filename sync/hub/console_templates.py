# ruff: noqa: E501 - HTML reads better on one line than split to fit Python's width
"""The console's templates and stylesheet, kept in Python so that the package needs no
data files. Every page is bilingual (Chinese first); there is no script anywhere."""

STYLESHEET = """
body { font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif;
       margin: 0; color: #1d2a33; background: #f6f7f9; }
header { background: #0b5394; color: #fff; padding: .6rem 1rem; display: flex;
         flex-wrap: wrap; gap: 1rem; align-items: center; }
header a, header button { color: #fff; }
header nav { display: flex; flex-wrap: wrap; gap: .8rem; align-items: center; }
header form { display: inline; }
header button { background: none; border: 1px solid #fff; border-radius: 3px; cursor: pointer; }
main { padding: 1rem; }
table { border-collapse: collapse; background: #fff; width: 100%; font-size: .9rem; }
th, td { border: 1px solid #d5dbe1; padding: .3rem .5rem; text-align: left;
         vertical-align: top; }
th { background: #e8eef4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.alarm { color: #a40000; font-weight: bold; }
.ok { color: #1b6e1b; }
.warn { color: #8a5a00; }
.error { background: #fde2e2; border: 1px solid #a40000; padding: .5rem; }
.notice { background: #e3f4e3; border: 1px solid #1b6e1b; padding: .5rem; }
.code { font-family: monospace; font-size: 1.6rem; letter-spacing: .2rem; }
form.inline { display: inline; }
fieldset { background: #fff; border: 1px solid #d5dbe1; margin-bottom: 1rem; }
label { display: inline-block; margin: .2rem .8rem .2rem 0; }
pre { background: #fff; border: 1px solid #d5dbe1; padding: .5rem; overflow: auto; }
"""

_BASE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}县级平台 County hub{% endblock %}</title>
<link rel="stylesheet" href="{{ url_for('console.stylesheet') }}">
</head>
<body>
<header>
  <strong>县医保结算平台 County settlement hub</strong>
  {% if viewer %}
  <nav>
    <a href="{{ url_for('console.fleet') }}">设备状态 Fleet</a>
    <a href="{{ url_for('console.reconciliation') }}">对账差异 Reconciliation</a>
    {% if viewer.is_admin %}
    <a href="{{ url_for('console.devices') }}">设备管理 Devices</a>
    {% for kind, name in kind_names.items() %}
    <a href="{{ url_for('console.publish', kind=kind) }}">发布{{ name }}</a>
    {% endfor %}
    {% endif %}
    <span>{{ viewer.username }} ({{ '管理员 admin' if viewer.is_admin else '协管员 coordinator' }}{% if viewer.township %}, {{ viewer.township }}{% endif %})</span>
    <form method="post" action="{{ url_for('console.logout') }}">
      <input type="hidden" name="csrf_token" value="{{ csrf_token }}">
      <button type="submit">退出 Sign out</button>
    </form>
  </nav>
  {% endif %}
</header>
<main>
{% block body %}{% endblock %}
</main>
</body>
</html>
"""

_STATES = """{% set state_names = {
  'enrolled': '已登记 enrolled', 'awaiting_enrollment': '待登记 awaiting enrollment',
  'code_expired': '登记码过期 code expired', 'revoked': '已停用 revoked'} %}"""

TEMPLATES = {
    "base.html": _BASE,
    "login.html": """{% extends "base.html" %}
{% block title %}登录 Sign in{% endblock %}
{% block body %}
<h1>登录 Sign in</h1>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
<form method="post">
  <input type="hidden" name="csrf_token" value="{{ csrf_token }}">
  <label>用户名 User name <input name="username" autocomplete="username" required></label>
  <label>密码 Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">登录 Sign in</button>
</form>
{% endblock %}""",
    "error.html": """{% extends "base.html" %}
{% block body %}<p class="error">{{ message }}</p>{% endblock %}""",
    "fleet.html": """{% extends "base.html" %}
{% block title %}设备状态 Fleet{% endblock %}
{% block body %}"""
    + _STATES
    + """
<h1>设备状态 Fleet status{% if township %} — {{ township }}{% endif %}</h1>
{% if townships %}
<form method="get">
  <label>乡镇 Township
    <select name="township">
      <option value="">全部 all</option>
      {% for t in townships %}<option value="{{ t }}" {{ 'selected' if t == township }}>{{ t }}</option>{% endfor %}
    </select>
  </label>
  <button type="submit">筛选 Filter</button>
</form>
{% endif %}
<p>
  <a href="{{ url_for('console.export_csv', what='settlements', township=township) }}">导出结算 CSV settlements</a> ·
  <a href="{{ url_for('console.export_csv', what='reconciliation', township=township) }}">导出对账 CSV reconciliation</a>
</p>
<table>
<tr><th>乡镇 Township</th><th>诊所 Clinic</th><th>设备 Device</th><th>状态 State</th>
<th>最后联系 Last contact</th><th>待传记录 Waiting</th><th>已确认 Acked</th>
<th>版本 Versions</th><th>时钟偏差 Clock skew</th><th>告警 Alarms</th><th>对账差异 Differences</th></tr>
{% for row in rows %}
<tr>
  <td>{{ row.township }}</td><td>{{ row.clinic_code }}</td>
  <td>{% if row.device_id %}<a href="{{ url_for('console.device', device_id=row.device_id) }}">{{ row.device_id }}</a>{% else %}—{% endif %}</td>
  <td>{{ state_names.get(row.state, row.state) }}</td>
  <td>{{ row.last_contact_at or '从未 never' }}{% if row.minutes_since_contact is not none %} ({{ row.minutes_since_contact }} 分钟前 min ago){% endif %}</td>
  <td class="num">{{ row.records_waiting if row.records_waiting is not none else '?' }}</td>
  <td class="num">{{ row.acked_seq }}</td>
  <td>{% for kind, version in (row.versions or {}).items() %}{{ kind }} {{ version or '—' }}<br>{% endfor %}</td>
  <td class="num {{ 'warn' if row.clock_skew_s and (row.clock_skew_s > 300 or row.clock_skew_s < -300) }}">{{ row.clock_skew_s if row.clock_skew_s is not none else '?' }} s</td>
  <td class="{{ 'alarm' if row.alarms }}">{{ row.alarms | join(', ') or '—' }}</td>
  <td class="num {{ 'warn' if row.reconciliation_differences }}">{{ row.reconciliation_differences }}</td>
</tr>
{% else %}
<tr><td colspan="11">还没有设备 No devices yet.</td></tr>
{% endfor %}
</table>
{% endblock %}""",
    "device.html": """{% extends "base.html" %}
{% block title %}{{ slot.device_id }}{% endblock %}
{% block body %}"""
    + _STATES
    + """
<h1>设备 Device {{ slot.device_id }}</h1>
<table>
<tr><th>诊所 Clinic</th><td>{{ slot.clinic_code }}, {{ slot.township }}</td></tr>
<tr><th>状态 State</th><td>{{ state_names.get(row.state, row.state) }}{% if slot.revoked_reason %} ({{ slot.revoked_reason }}){% endif %}</td></tr>
<tr><th>登记 Enrolled</th><td>{{ slot.enrolled_at }}</td></tr>
<tr><th>最后联系 Last contact</th><td>{{ slot.last_contact_at or '从未 never' }}</td></tr>
<tr><th>已确认 Acked seq</th><td>{{ row.acked_seq }} ({{ row.records_held }} 条在平台 held, {{ row.records_beyond_gap }} 条等待补缺 beyond a gap)</td></tr>
<tr><th>时钟偏差 Clock skew</th><td>{{ slot.clock_skew_s if slot.clock_skew_s is not none else '?' }} s</td></tr>
</table>
<h2>告警 Alarms</h2>
<table>
<tr><th>代码 Code</th><th>记录 Seq</th><th>说明 Detail</th><th>时间 Raised</th><th>次数 Repeats</th><th>处理 Cleared</th></tr>
{% for alarm in alarms %}
<tr><td class="{{ 'alarm' if not alarm.cleared_at }}">{{ alarm.code }}</td><td class="num">{{ alarm.seq if alarm.seq is not none else '—' }}</td>
<td>{{ alarm.detail }}</td><td>{{ alarm.raised_at }}</td><td class="num">{{ alarm.repeats }}</td>
<td>{% if alarm.cleared_at %}{{ alarm.cleared_at }}{% elif viewer.is_admin %}
<form class="inline" method="post" action="{{ url_for('console.clear_alarm', alarm_id=alarm.alarm_id) }}">
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<input type="hidden" name="back" value="{{ url_for('console.device', device_id=slot.device_id) }}">
<button type="submit">已处理 Clear</button></form>{% else %}—{% endif %}</td></tr>
{% else %}<tr><td colspan="6" class="ok">无 None</td></tr>{% endfor %}
</table>
<h2>对账 Reconciliation</h2>
{% include "items.html" %}
<h2>最近心跳 Last heartbeat</h2>
<pre>{{ heartbeat }}</pre>
{% endblock %}""",
    "items.html": """<table>
<tr><th>#</th><th>设备 Device</th><th>记录 Seq</th><th>类型 Code</th><th>营业日 Day</th><th>差异 Differences (设备 device → 平台 county)</th></tr>
{% for item in items %}
<tr><td class="num">{{ item.item_id }}</td><td>{{ item.device_id }}</td><td class="num">{{ item.seq }}</td>
<td>{{ item.code }}</td><td>{{ item.business_day or '' }}</td>
<td>{% for name, sides in (item.details.fields or {}).items() %}{{ name }}: {{ sides.device }} → {{ sides.hub }}<br>{% endfor %}
{% if item.details.reason %}{{ item.details.reason }}{% endif %}
{% if item.details.reasons %}{{ item.details.reasons | join(', ') }}{% endif %}
{% if item.details.error %}{{ item.details.error.code }}: {{ item.details.error.message }}{% endif %}</td></tr>
{% else %}<tr><td colspan="6" class="ok">无差异 No differences</td></tr>{% endfor %}
</table>""",
    "reconciliation.html": """{% extends "base.html" %}
{% block title %}对账差异 Reconciliation{% endblock %}
{% block body %}
<h1>对账差异 Reconciliation{% if township %} — {{ township }}{% endif %}</h1>
<p>共 {{ total }} 条 items.
{% if show_reviews %}<a href="{{ url_for('console.reconciliation', township=township) }}">隐藏待复核 Hide review flags</a>
{% else %}<a href="{{ url_for('console.reconciliation', township=township, reviews=1) }}">显示待复核 Show review flags</a>{% endif %}
· <a href="{{ url_for('console.export_csv', what='reconciliation', township=township) }}">CSV</a></p>
{% include "items.html" %}
{% endblock %}""",
    "devices.html": """{% extends "base.html" %}
{% block title %}设备管理 Devices{% endblock %}
{% block body %}"""
    + _STATES
    + """
<h1>设备管理 Devices and provisioning</h1>
<p>县级公钥指纹 County key fingerprint: <strong>{{ county.fingerprint }}</strong></p>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
{% if provisioned %}
<div class="notice">
  <p>设备位 Slot {{ provisioned.slot_id }}: {{ provisioned.clinic_code }}, {{ provisioned.township }}</p>
  <p>一次性登记码 One-time enrollment code (只显示一次 shown once, 有效至 valid until {{ provisioned.expires_at }}):</p>
  <p class="code">{{ provisioned.code }}</p>
  <p>在终端上 On the terminal: <code>clinic enroll --hub URL --code {{ provisioned.code }}</code></p>
</div>
{% endif %}
<fieldset><legend>新设备位 Provision a device slot</legend>
<form method="post">
  <input type="hidden" name="csrf_token" value="{{ csrf_token }}">
  <input type="hidden" name="action" value="provision">
  <label>诊所编码 Clinic code <input name="clinic_code" required></label>
  <label>乡镇 Township <input name="township" required></label>
  <button type="submit">生成登记码 Provision</button>
</form></fieldset>
<p>设备登记时使用它自己的编号和公钥（由终端初始化时生成），平台不会改名。
A device enrolls with its own id and public key, made when the terminal was initialised; the hub never renames it.</p>
<table>
<tr><th>设备位 Slot</th><th>乡镇 Township</th><th>诊所 Clinic</th><th>设备 Device</th><th>状态 State</th><th>停用 Revoke</th></tr>
{% for row in rows %}
<tr><td class="num">{{ row.slot_id }}</td><td>{{ row.township }}</td><td>{{ row.clinic_code }}</td>
<td>{{ row.device_id or '—' }}</td><td>{{ state_names.get(row.state, row.state) }}</td>
<td>{% if row.state != 'revoked' %}
<form class="inline" method="post">
  <input type="hidden" name="csrf_token" value="{{ csrf_token }}">
  <input type="hidden" name="action" value="revoke">
  <input type="hidden" name="target" value="{{ row.device_id or 'slot-%d' % row.slot_id }}">
  <input name="reason" placeholder="原因 reason">
  <button type="submit">停用 Revoke</button>
</form>{% else %}{{ row.revoked_at }}{% endif %}</td></tr>
{% endfor %}
</table>
{% endblock %}""",
    "publish.html": """{% extends "base.html" %}
{% block title %}发布 Publish {{ kind }}{% endblock %}
{% block body %}
<h1>发布{{ kind_names[kind] }}</h1>
<p>当前版本 Current version: <strong>{{ latest.version if latest else '无 none' }}</strong>
{% if latest %}(发布 published {{ latest.published_at }}, 有效至 expires {{ latest.expires_at }}){% endif %}</p>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
{% if published %}
<p class="notice">已签名发布 Signed and published: {{ kind }} {{ published.version }}, 有效至 expires {{ published.expires_at }}, SHA-256 {{ published.content_sha256[:16] }}…</p>
{% endif %}
{% if preview %}
<fieldset><legend>预览 Preview: {{ kind }} {{ preview.version or '?' }}</legend>
<p>{{ preview.summary }}</p>
{% if preview.diff %}
<p>与 {{ preview.diff.base_version or '（无）' }} 相比 Against {{ preview.diff.base_version or 'nothing' }}:
新增 added {{ preview.diff.added | length }}, 删除 removed {{ preview.diff.removed | length }},
变更 changed {{ preview.diff.changed | length }}, 未变 unchanged {{ preview.diff.unchanged }}</p>
<table><tr><th>编码 Code</th><th>变更 Change</th></tr>
{% for code in preview.diff.added[:50] %}<tr><td>{{ code }}</td><td>新增 added</td></tr>{% endfor %}
{% for code in preview.diff.removed[:50] %}<tr><td>{{ code }}</td><td>删除 removed</td></tr>{% endfor %}
{% for code, change in preview.diff.changes.items() %}<tr><td>{{ code }}</td><td>
{% for field, value in change.new.items() if change.old.get(field) != value %}{{ field }}: {{ change.old.get(field) }} → {{ value }}<br>{% endfor %}
{% for field in change.old if field not in change.new %}{{ field }}: {{ change.old[field] }} → —<br>{% endfor %}</td></tr>{% endfor %}
</table>
{% endif %}
<form method="post">
  <input type="hidden" name="csrf_token" value="{{ csrf_token }}">
  <input type="hidden" name="step" value="publish">
  <input type="hidden" name="token" value="{{ preview.token }}">
  <input type="hidden" name="version" value="{{ preview.version or '' }}">
  <input type="hidden" name="expires" value="{{ preview.expires }}">
  <button type="submit">签名并发布 Sign and publish</button>
</form></fieldset>
{% endif %}
<fieldset><legend>上传新版本 Upload a new version</legend>
<form method="post" enctype="multipart/form-data">
  <input type="hidden" name="csrf_token" value="{{ csrf_token }}">
  <input type="hidden" name="step" value="preview">
  <label>文件 File ({{ 'CSV / JSON' if kind == 'catalog' else 'JSON' }}) <input type="file" name="file" required></label>
  <label>版本 Version <input name="version" placeholder="2026.12.1"></label>
  <label>有效至 Expires <input name="expires" type="date" required></label>
  <button type="submit">预览差异 Preview</button>
</form></fieldset>
{% endblock %}""",
}
