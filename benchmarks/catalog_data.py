"""A deterministic national-catalog CSV of any size, shaped like the real one.

About 70% of the rows are generic names (real stems × dosage forms, many rows per
generic as in the national catalog: different specs and makers); the rest are random
3-8 character names from common characters, so that most names are distinct.
"""

import csv
import random
import string
import time
from dataclasses import dataclass
from pathlib import Path

from edge.domain.documents import CATALOG_CSV_COLUMNS

# Generic-name stems (Western and Chinese patent medicines) as the catalog spells them.
_STEM_TEXT = """
阿莫西林 阿莫西林克拉维酸钾 头孢克肟 头孢呋辛酯 头孢拉定 头孢氨苄 头孢羟氨苄 头孢克洛 头孢丙烯
头孢地尼 青霉素V钾 阿奇霉素 罗红霉素 克拉霉素 红霉素 琥乙红霉素 克林霉素 左氧氟沙星 莫西沙星
环丙沙星 诺氟沙星 氧氟沙星 甲硝唑 替硝唑 磷霉素 呋喃妥因 复方磺胺甲噁唑 氟康唑 伊曲康唑
特比萘芬 克霉唑 咪康唑 酮康唑 莫匹罗星 夫西地酸 妥布霉素 利巴韦林 阿昔洛韦 奥司他韦 布洛芬
对乙酰氨基酚 双氯芬酸钠 洛索洛芬钠 塞来昔布 美洛昔康 萘普生 吲哚美辛 阿司匹林 氯吡格雷
替格瑞洛 利伐沙班 华法林钠 西洛他唑 双嘧达莫 硝苯地平 氨氯地平 非洛地平 拉西地平 乐卡地平
贝尼地平 尼莫地平 厄贝沙坦 缬沙坦 氯沙坦钾 替米沙坦 坎地沙坦酯 奥美沙坦酯 卡托普利 依那普利
贝那普利 培哚普利 福辛普利 美托洛尔 比索洛尔 卡维地洛 阿替洛尔 特拉唑嗪 多沙唑嗪 吲达帕胺
氢氯噻嗪 呋塞米 托拉塞米 螺内酯 地高辛 单硝酸异山梨酯 硝酸甘油 曲美他嗪 胺碘酮 普罗帕酮
阿托伐他汀钙 瑞舒伐他汀钙 辛伐他汀 普伐他汀钠 匹伐他汀钙 非诺贝特 依折麦布 二甲双胍 格列美脲
格列齐特 格列吡嗪 阿卡波糖 伏格列波糖 瑞格列奈 吡格列酮 西格列汀 甘精胰岛素 门冬胰岛素
奥美拉唑 兰索拉唑 泮托拉唑 雷贝拉唑 法莫替丁 多潘立酮 莫沙必利 铝碳酸镁 蒙脱石 乳果糖
匹维溴铵 曲美布汀 双歧杆菌三联活菌 枯草杆菌二联活菌 乳酸菌素 消旋山莨菪碱 颠茄 熊去氧胆酸
多烯磷脂酰胆碱 甘草酸二铵 水飞蓟宾 恩替卡韦 替诺福韦 氯雷他定 地氯雷他定 西替利嗪 氯苯那敏
氨溴索 溴己新 右美沙芬 复方甘草 沙丁胺醇 孟鲁司特钠 布地奈德 地塞米松 泼尼松 甲泼尼龙
氢化可的松 维生素C 维生素B1 维生素B6 维生素B12 甲钴胺 叶酸 碳酸钙 葡萄糖酸钙 硫酸亚铁 氯化钾
碳酸氢钠 骨化三醇 阿法骨化醇 阿仑膦酸钠 别嘌醇 非布司他 秋水仙碱 氨基葡萄糖 坦索罗辛 非那雄胺
左甲状腺素钠 甲巯咪唑 倍他司汀 氟桂利嗪 谷维素 艾司唑仑 阿普唑仑 地西泮 佐匹克隆 帕罗西汀
舍曲林 氟西汀 艾司西酞普兰 米氮平 奥氮平 利培酮 喹硫平 丙戊酸钠 卡马西平 左乙拉西坦 加巴喷丁
普瑞巴林 多奈哌齐 美金刚 西地碘 地喹氯铵 板蓝根 连花清瘟 感冒清热 双黄连 银翘解毒 藿香正气
六味地黄 复方丹参 银杏叶 丹参 三七 穿心莲 蒲地蓝消炎 清开灵 小柴胡 牛黄解毒 牛黄上清 黄连上清
逍遥 香砂养胃 健胃消食 保和 川贝枇杷 强力枇杷 通宣理肺 养阴清肺 蛇胆川贝 云南白药 活血止痛
伤湿止痛 独活寄生 金匮肾气 杞菊地黄 知柏地黄 归脾 补中益气 八珍 十全大补 乌鸡白凤 益母草
妇科千金 桂枝茯苓 参芪降糖 天麻钩藤 脑心通 血塞通 通心络 稳心 参松养心 芪苈强心 麝香保心
"""
STEMS = _STEM_TEXT.split()

# Dosage form -> (specs, units) to draw from.
FORMS = {
    "片": (["0.25g*24片", "5mg*100片", "10mg*30片", "0.1g*100片", "20mg*14片"], ["盒", "瓶"]),
    "胶囊": (["0.25g*24粒", "0.5g*20粒", "0.3g*36粒", "0.15g*12粒"], ["盒", "瓶"]),
    "颗粒": (["10g*10袋", "6g*9袋", "3g*12袋", "0.125g*12袋"], ["盒"]),
    "注射液": (["2ml:10mg", "1ml:0.5mg", "5ml:0.1g", "10ml:0.5g"], ["支"]),
    "口服液": (["10ml*10支", "10ml*6支", "100ml"], ["盒", "瓶"]),
    "软膏": (["10g", "15g:0.15g", "20g"], ["支"]),
    "滴眼液": (["5ml:15mg", "8ml:24mg", "0.4ml*10支"], ["支", "盒"]),
    "缓释片": (["20mg*30片", "30mg*7片", "0.5g*10片"], ["盒"]),
    "分散片": (["0.125g*12片", "0.25g*18片"], ["盒"]),
    "肠溶片": (["20mg*14片", "25mg*100片", "100mg*30片"], ["盒", "瓶"]),
    "糖浆": (["100ml", "120ml", "150ml"], ["瓶"]),
    "丸": (["6g*10丸", "浓缩丸200丸", "9g*10丸"], ["盒", "瓶"]),
    "散": (["3g*9袋", "6g*6袋"], ["盒"]),
    "贴剂": (["7cm*10cm*4贴", "5贴"], ["盒"]),
    "喷雾剂": (["20ml", "30ml:0.6g"], ["瓶", "支"]),
}

# A few hundred common characters for the random names.
COMMON_CHARS = (
    "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会家"
    "可下而过天去能对小多然于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己"
    "面最女但现前些所同日手又行意动方期它头经长儿回位分爱老因很给名法间斯知世什两次使身者被"
    "高已亲其进此话常与活正感见明问力理尔点文几定本公特做外孩相西果走将月十实向声车全信重三"
    "机工物气每并别真打太新比才便夫再书部水像眼等体却加电主界门利海受听表德少克代员许先口"
    "由死安写性马光白或住难望教命花结乐色更拉东神记处让母父应直字场平报友关放至张认接告入笑"
    "内英军候民岁往何度山觉路带万男边风解叫任金快原吃妈变通师立象数四失满战远格士音轻目条呢"
    "病始达深完今提求清王化空业思切怎非找片罗钱吗语元喜曾离飞科言干流欢约各即指合反题必该论"
    "交终林请医晚制球决传画保读运及则房早院量苦火布品近坐产答星精视五连司巴奇管类未朋且婚台"
    "夜青北队久乎越观落尽形影红爸百令周吧识步希亚术留市半热送兴造谈容极随演收首根讲整式取照"
    "办强石古华拿计您装似足双妻尼转诉米称丽客南领节衣站黑刻统断福城故历惊脸选包紧争另建维绝"
)

KINDS_FOR_RANDOM = ["drug"] * 6 + ["service"] * 2 + ["material"] * 2
CHRONIC_LISTS = ["I10.x00", "E11.900", "I10.x00;E11.900", "I25.103"]


@dataclass(frozen=True)
class GeneratedCatalog:
    """The CSV file written, with a sample of its rows for building search queries."""

    path: Path
    count: int
    seconds: float
    size_bytes: int
    sample: tuple[tuple[str, str], ...]  # (code, name)


def write_catalog_csv(
    path: Path, count: int, seed: int, sample_size: int = 2000
) -> GeneratedCatalog:
    """Write `count` items to `path` (columns as `CATALOG_CSV_COLUMNS`), deterministically."""
    start = time.perf_counter()
    rng = random.Random(seed)
    codes: set[str] = set()
    sample: list[tuple[str, str]] = []
    every = max(1, count // sample_size)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CATALOG_CSV_COLUMNS)
        for index in range(count):
            row = _row(rng, codes)
            writer.writerow(row)
            if index % every == 0:
                sample.append((row[0], row[1]))
    return GeneratedCatalog(
        path=path,
        count=count,
        seconds=time.perf_counter() - start,
        size_bytes=path.stat().st_size,
        sample=tuple(sample),
    )


_CODE_CHARS = string.ascii_uppercase + string.digits


def _code(rng: random.Random, taken: set[str]) -> str:
    while True:
        code = "X" + "".join(rng.choices(_CODE_CHARS, k=13))
        if code not in taken:
            taken.add(code)
            return code


def _decimal(units: int, places: int) -> str:
    """`units` ten-thousandths of a yuan as a decimal string with `places` places."""
    whole, frac = divmod(units, 10_000)
    if places == 0:
        return str(whole)
    return f"{whole}.{frac:04d}"[: len(str(whole)) + 1 + places]


def _price(rng: random.Random) -> tuple[int, int]:
    """(ten-thousandths of a yuan, decimal places): tablets in fen fractions, boxes in yuan."""
    places = rng.choice((2, 2, 2, 1, 0, 3, 4, 4))
    step = 10 ** (4 - places)
    top = rng.choice((5, 50, 50, 200, 2000))  # yuan
    units = rng.randint(1, top * 10_000 // step) * step
    return units, places


def _row(rng: random.Random, taken: set[str]) -> list[str]:
    if rng.random() < 0.70:
        form = rng.choice(list(FORMS))
        name = rng.choice(STEMS) + form
        specs, units = FORMS[form]
        spec, unit, kind = rng.choice(specs), rng.choice(units), "drug"
    else:
        name = "".join(rng.choices(COMMON_CHARS, k=rng.randint(3, 8)))
        kind = rng.choice(KINDS_FOR_RANDOM)
        spec = "" if kind == "service" else rng.choice(("1", "5ml", "10cm*10cm", "个"))
        unit = {"drug": "盒", "service": "次", "material": "个"}[kind]
    item_class = rng.choices("ABC", weights=(45, 35, 20))[0]
    price_units, places = _price(rng)
    payment_standard = self_prepay = gender = min_age = max_age = ""
    max_qty = chronic = valid_from = valid_to = ""
    if item_class != "C" and rng.random() < 0.10:
        scaled = price_units * rng.randint(70, 120) // 100
        payment_standard = _decimal(max(1, scaled // 100) * 100, 2)
    if item_class == "B" and rng.random() < 0.30:
        self_prepay = rng.choice(("0.05", "0.10", "0.15", "0.20"))
    if rng.random() < 0.15:
        max_qty = rng.choice(("1", "2", "3", "5", "10", "24", "72", "2.5"))
    if rng.random() < 0.01:
        gender = rng.choice("MF")
    if rng.random() < 0.02:
        min_age, max_age = rng.choice((("0", "14"), ("18", ""), ("", "65")))
    if rng.random() < 0.02:
        chronic = rng.choice(CHRONIC_LISTS)
    if rng.random() < 0.05:
        valid_from = rng.choice(("2023-01-01", "2024-07-01", "2026-01-01"))
    if rng.random() < 0.02:
        valid_to = rng.choice(("2026-12-31", "2030-12-31"))
    return [
        _code(rng, taken), name, spec, unit, kind, item_class, _decimal(price_units, places),
        payment_standard, self_prepay, gender, min_age, max_age, max_qty, chronic,
        valid_from, valid_to,
    ]  # fmt: skip
