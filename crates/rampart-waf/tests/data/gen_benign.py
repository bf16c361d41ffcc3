#!/usr/bin/env python3
"""Make benign-api-requests.jsonl: a corpus of ordinary SaaS API traffic for the WAF false-positive test.

Every line is one request, {"name", "method", "uri", "headers": [[name, value], ...], "body" | "body_base64"}:
REST CRUD on many resources, SaaS query strings (pagination, cursors, filters, OAuth), JSON bodies
(nested, unicode, escapes, long base64 blobs, long arrays), form posts, multipart uploads, GraphQL,
webhook deliveries with signatures and a few XML (SOAP, RSS, Atom) bodies. Nothing in it is an attack.
PUT, PATCH and DELETE are among the methods: the CRS only lets them through when tx.allowed_methods
(crs-setup rule 900200) lists them, as an API deployment sets it; its default is GET HEAD POST OPTIONS.

Deterministic (fixed seed, standard library only). Run from the repository root:

    python3 crates/rampart-waf/tests/data/gen_benign.py
"""

import base64
import hashlib
import hmac
import json
import os
import random
import time
import unicodedata
import uuid
from urllib.parse import quote, quote_plus, urlencode

SEED = 20240611
R = random.Random(SEED)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benign-api-requests.jsonl")
EPOCH = 1717200000  # 2024-06-01T00:00:00Z; all timestamps are offsets from it

# ---------------------------------------------------------------------------------------------
# Small random helpers
# ---------------------------------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def pick(seq):
    return R.choice(seq)


def chance(p):
    return R.random() < p


def alnum(n, alphabet=ALNUM):
    return "".join(R.choice(alphabet) for _ in range(n))


def hexs(n):
    return "".join(R.choice("0123456789abcdef") for _ in range(n))


def new_uuid():
    return str(uuid.UUID(int=R.getrandbits(128), version=4))


def obj_id(prefix, n=14):
    return f"{prefix}_{alnum(n)}"


def b64(data):
    return base64.b64encode(data).decode()


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def rbytes(n):
    return bytes(R.getrandbits(8) for _ in range(n))


def ts(spread=86400 * 120):
    return EPOCH + R.randint(-spread, spread)


def iso(t=None, ms=False):
    t = ts() if t is None else t
    s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    if ms:
        s += ".%03d" % R.randint(0, 999)
    return s + "Z"


def day(t=None):
    return time.strftime("%Y-%m-%d", time.gmtime(ts() if t is None else t))


def money():
    return pick([499, 999, 1200, 1999, 2500, 4900, 9900, 12000, 15075, 29900, 125000, R.randint(100, 500000)])


# ---------------------------------------------------------------------------------------------
# Vocabulary: people, places, companies, products, prose
# ---------------------------------------------------------------------------------------------

FIRST = ["Emma", "Liam", "Olivia", "Noah", "Sofía", "José", "Zoë", "Chloé", "François", "Björn", "Søren", "Łukasz",
         "Ngozi", "Aroha", "Priya", "Arjun", "Mei", "Hiroshi", "Yuki", "Seo-yeon", "Ahmed", "Fatima", "Olga",
         "Dmitri", "Siobhán", "Seán", "Aoife", "Mateus", "Thandiwe", "Kwame", "Noémie", "Ana Lucía", "Jürgen",
         "Mary-Kate", "Grace", "Tomás", "Inés", "Karan", "Leilani", "Matthew"]
LAST = ["O'Brien", "O'Connor", "D'Angelo", "Müller", "García", "Núñez", "Kowalski", "Nguyen", "Smith", "Johnson",
        "Okafor", "Tanaka", "Kim", "Haddad", "Ivanova", "van der Berg", "MacLeod", "Dubois", "Rossi", "Silva",
        "Schröder", "Andersson", "Patel", "Chen", "Dlamini", "Yılmaz", "Ó Súilleabháin", "St. James", "Lefèvre",
        "Hernández-Ruiz", "Brown", "Walsh", "Fernandes", "Nakamura", "Abara"]
INTL_NAMES = ["王小明", "李娜", "田中 太郎", "佐藤 花子", "김민준", "이서연", "Иван Петров", "Анна Смирнова",
              "محمد العلي", "فاطمة الزهراء", "Ελένη Παπαδοπούλου", "Đặng Thu Thảo", "שרה כהן", "Ayşe Demir",
              "Nguyễn Văn An", "Zoë Ødegaard"]
ROMANIZED = ["xiaoming.wang", "li.na", "taro.tanaka", "hanako.sato", "minjun.kim", "seoyeon.lee", "ivan.petrov",
             "anna.smirnova", "m.alali", "fatima.z", "eleni.p", "thuthao", "sarah.cohen", "ayse.demir", "van.an"]
COMPANIES = ["Bluebird Bakery", "Harbor & Pine Co.", "Kite Analytics", "Café Lumière", "Fjord Outfitters AB",
             "Sunrise Dental (Downtown)", "Marigold Studio", "Peak Logistics GmbH", "Juniper Labs Ltd.",
             "O'Malley's Pub", "Tanaka Trading K.K.", "Nova Biotech S.A.", "Little Fox Books", "Riverbend Farms",
             "Copper Kettle Coffee", "Atlas Freight & Storage", "Maple Leaf Pediatrics", "Zephyr Cycles",
             "Brightside Tutoring", "Silverline Travel", "株式会社さくら", "ООО Ромашка", "Quill & Ink Stationers",
             "Evergreen Property Mgmt.", "Lakeside Veterinary Clinic", "Studio Nørd"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "acme.example", "corp.example.co.uk"]
CITIES = [
    ("221 Baker Street", "Flat 4B", "London", "NW1 6XE", "GB", None),
    ("350 Fifth Avenue", "Suite 4200", "New York", "10118", "US", "NY"),
    ("1 Market St", "Floor 12", "San Francisco", "94105", "US", "CA"),
    ("12 Rue de Rivoli", None, "Paris", "75004", "FR", None),
    ("Friedrichstraße 43", "3. OG", "Berlin", "10117", "DE", None),
    ("Calle de Alcalá 48", "2º izq.", "Madrid", "28014", "ES", None),
    ("神南1-2-3", "渋谷ビル 5F", "渋谷区", "150-0041", "JP", "東京都"),
    ("ул. Тверская, 7", "кв. 12", "Москва", "125009", "RU", None),
    ("Rua Augusta, 1500", "Conjunto 31", "São Paulo", "01304-001", "BR", "SP"),
    ("88 Queen Street", None, "Auckland", "1010", "NZ", None),
    ("200 George St", "Level 3", "Sydney", "2000", "AU", "NSW"),
    ("Keizersgracht 123", None, "Amsterdam", "1015 CJ", "NL", None),
    ("Sheikh Zayed Road 1", "Office 804", "Dubai", "00000", "AE", None),
    ("Vasagatan 10", None, "Stockholm", "111 20", "SE", None),
    ("4 Rue du Petit-Champlain", None, "Québec", "G1K 4H4", "CA", "QC"),
    ("17 O'Connell Street Upper", None, "Dublin", "D01 T9C2", "IE", None),
]
PHONES = ["+1 415-555-0132", "+1 (212) 555-0199", "+44 20 7946 0958", "+49 30 901820", "+33 1 42 68 53 00",
          "+81 3-1234-5678", "+61 2 9374 4000", "+55 11 91234-5678", "+353 1 555 0100", "+971 4 555 0123",
          "+14155550178", "+447700900123"]
PRODUCTS = ["Pro plan (monthly)", "Team plan - annual", "Starter", "Enterprise seat", "Extra storage 100 GB",
            "Organic Ethiopian Yirgacheffe, 1 kg", "Men's trail running shoe", "Women's rain jacket (navy)",
            "Ceramic pour-over set", "USB-C cable, 2 m", "Gift card €50", "Café au lait mug", "Notebook A5 dotted",
            "Wireless earbuds", "Standing desk frame", "Kids' bike helmet", "Yoga mat 6 mm", "Espresso beans 500 g",
            "抹茶ラテ", "Чайный набор", "Premium support add-on", "SMS credits (1,000)"]
CURRENCIES = ["usd", "eur", "gbp", "jpy", "cad", "aud", "chf", "sek", "brl"]
LOCALES = ["en-US", "en-GB", "fr-FR", "de-DE", "es-ES", "ja-JP", "pt-BR", "ru-RU", "zh-CN", "ar-AE", "ko-KR"]
TIMEZONES = ["America/New_York", "Europe/London", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney",
             "America/Los_Angeles", "America/Sao_Paulo", "Asia/Kolkata", "Pacific/Auckland", "UTC"]
TAGS = ["vip", "beta", "churn-risk", "enterprise", "trial", "newsletter", "partner", "wholesale", "priority",
        "q3-campaign", "eu", "apac", "onboarding", "renewal"]
COLORS = ["#1A73E8", "#FF5722", "#00BFA5", "#6200EE", "#333333", "#F4B400"]

SENTENCES = [
    "Thanks for the quick turnaround on this!",
    "Customer asked us to hold the shipment until Monday.",
    "Please don't charge the card on file until the contract is signed.",
    "We've updated the billing address; the old one is no longer valid.",
    "Order arrived damaged (box was crushed), so a replacement is on its way.",
    "She said it's \"the best support experience\" she's had in years.",
    "Renewal is due next month & the team wants to add 5 more seats.",
    "Could you update the invoice to show our VAT number? Thanks.",
    "Deliver to the side entrance, ring twice.",
    "Café staff prefer deliveries before 10am.",
    "Follow-up call scheduled with O'Brien's team for Thursday at 3pm.",
    "Discount approved by finance: 15% off the first year.",
    "Migrated from the legacy plan; usage limits carried over.",
    "Please select the annual option when the trial ends.",
    "The union of both teams' calendars shows no free slot this week.",
    "Heads-up: the order has been split into two shipments.",
    "We'll drop the old API version at the end of Q3.",
    "Let's sync again after the holidays, there's no rush.",
    "Kids' sizes run small, so order one size up.",
    "Note from the driver: left with the neighbour at no. 12.",
    "Happy to help! Let me know if there's anything else.",
    "The customer wasn't home; a second delivery attempt is planned.",
    "Invoice #1043 was paid twice, so one payment needs a refund.",
    "Please send the W-9 and the signed MSA to accounts payable.",
    "Our office is closed from Dec 24 to Jan 2.",
    "Price includes tax; shipping is calculated at checkout.",
    "Reminder: quarterly business review on the 14th.",
    "Great news, the integration is live in production!",
    "This is a re-send of last week's request, sorry for the noise.",
    "Items 3 and 4 are back-ordered until mid-July.",
    "Je voudrais changer l'adresse de livraison, s'il vous plaît.",
    "Bitte die Rechnung an die neue Adresse schicken.",
    "¿Pueden enviar la factura a contabilidad? ¡Gracias!",
    "配送先の住所を変更してください。",
    "Пожалуйста, отправьте счёт на новый адрес.",
    "يرجى إرسال الفاتورة إلى قسم المحاسبة.",
    "Really nice work on the new dashboard 🎉",
    "Shipping to Zürich takes 3–5 business days.",
    "Ticket escalated to tier 2 — waiting on engineering.",
    "Replaced the broken hinge; the rest of the frame is fine.",
    "Click 'Save' and then 'Publish' to go live.",
    "Pick the plan from the list where it says 'Annual' or 'Monthly'.",
    "Please select all invoices from last month and update their status to 'paid'.",
    "Our union rep asked for the order history from 2023.",
    "Drop-off is at the back door; please don't block the driveway.",
    "Set the delivery window to 9-12 (mornings only).",
    "Use code SPRING24 at checkout -- it's valid until Sunday.",
    "\"Where is my order?\" is our most common ticket type.",
    "Choose 'Delete account' only if you're sure; this can't be undone.",
    "I'd like to change my username to 'mike_o' if possible.",
    "Tom & Jerry's Diner (Main St.) -- order #5521",
    "50% off for 3 months, then $29/month.",
    "Call me at (555) 010-4477 or email me.",
    "She asked: \"Can we get net-60 terms?\"",
    "Report for Q2 -- revenue is up 12% vs. Q1 and churn is down.",
    "Meeting moved to 3:00 p.m. (EST), same Zoom link.",
    "5 x 10 cm, 200 g/m², matte finish.",
    "C'est génial ! Merci beaucoup.",
    "¿Dónde está mi pedido? Llevo una semana esperando.",
    "Größe: M – Farbe: Blau",
    "我们下周一发货。谢谢！",
    "Спасибо за заказ! Доставка завтра.",
    "شكراً لطلبك، سيتم الشحن غداً.",
    "주문해 주셔서 감사합니다!",
    "Thanks!! 🙌🙌 Love the new features 💯",
    "1) Log in 2) Go to Settings 3) Click Billing",
    "Status: shipped → in transit → delivered",
    "A/B test results: variant B won by 3.2%.",
    "Order 1 of 3 — remaining items ship separately.",
    "Can you create a new user for our intern, Ana?",
    "Please insert the new clause into section 4 of the contract.",
    "What's the difference between 'Pro' and 'Team'?",
]
INTL_SENTENCES = [x for x in SENTENCES if not x.isascii()]
# Sentences that stand alone, never joined to others by sentences(): "union" ones read as SQL to the CRS next
# to a "select ... from" one (942270), and the CRS's utf8toUnicode + urlDecodeUni turn 货 and 谢 into ' and ",
# which libinjection reads as SQL next to an apostrophe or a parenthesis (942100).
JOINABLE_SENTENCES = [x for x in SENTENCES if "union" not in x and "谢" not in x]
TEMPLATES = [
    "<p>Hi {{first_name}},</p><p>Your invoice <strong>#{{invoice_number}}</strong> is ready.</p>",
    "<p>Thanks for your order!<br>We'll email you when it ships.</p>",
    "<h1>Welcome aboard</h1><p>Questions? Just reply to this email.</p>",
    "<p>Your receipt is attached.</p><a href=\"https://www.example.com/account\">Manage your account</a>",
    "Hello {{ customer.name }}, your order {{ order.number }} has shipped.",
    "Hi %FIRSTNAME%, your trial ends in 3 days.",
    "Dear [Name], thank you for your purchase.",
]
TITLES = ["Quarterly report", "Onboarding checklist", "Website redesign", "Fix checkout button color",
          "Q3 planning", "Customer feedback round-up", "Migrate billing emails", "Spring sale banner",
          "Weekly sync notes", "Mobile app release 4.2", "Warehouse inventory count", "Hiring plan 2024",
          "Support macros cleanup", "New pricing page", "Team offsite (Lisbon)", "Renew SSL certificates"]
MARKDOWN = [
    "## Release notes\n\n- Fixed a bug where invoices weren't emailed\n- **New:** export to CSV\n- Faster search\n\n"
    "> Note: this doesn't affect existing plans.\n\nSee [the docs](https://docs.example.com/billing/invoices) for details.",
    "### Steps to reproduce\n\n1. Open the dashboard\n2. Click *Export*\n3. Choose \"Last 30 days\"\n\n"
    "**Expected:** a CSV download\n**Actual:** nothing happens",
    "Hi team,\n\nQuick summary of today's call:\n\n* Budget approved (finally!)\n* Launch moved to **June 18**\n"
    "* Ana will own the rollout\n\nCheers,\nMatt",
    "# Meeting notes\n\n| Owner | Item | Due |\n|---|---|---|\n| Priya | Pricing page copy | Fri |\n"
    "| José | QA pass | Mon |\n\n_Next sync: Thursday._",
    "Thanks for reaching out! Here's what we found:\n\n1. Your card was declined by the issuer\n"
    "2. We retried twice\n\nYou can update the card under **Settings > Billing**.",
    "**TL;DR** the import finished, 1,204 rows created and 3 skipped (missing email).\n\n"
    "Skipped rows are listed in the attached report.",
]
COMMIT_MESSAGES = ["Fix typo in README", "Add pagination to orders list", "Bump axios from 1.6.5 to 1.6.7",
                   "Refactor invoice totals and add tests", "Bump dependencies to the latest minor versions", "Merge pull request #482 from feature/export",
                   "Handle empty cart in checkout", "Improve error message for expired cards", "Add Japanese translations",
                   "Release v2.4.0", "Remove unused CSS", "Docs: clarify webhook retries"]
SEARCH_TERMS = ["running shoes", "blue jacket", "invoice 1043", "O'Brien", "coffee beans", "café", "order status",
                "refund policy", "standing desk", "gift card", "tokyo", "new york office", "jane doe", "ergonomic chair",
                "black friday", "annual plan", "how to select a plan", "update billing", "union square", "red & white mug",
                "kids helmet", "München", "東京", "garden hose 20m", "how to export data"]


TRANSLIT = str.maketrans({"ł": "l", "ø": "o", "ß": "ss", "æ": "ae", "đ": "d", "ı": "i", "œ": "oe"})


def person():
    if chance(0.2):
        name = pick(INTL_NAMES)
        first, last = name, ""
    else:
        first, last = pick(FIRST), pick(LAST)
        name = f"{first} {last}"
    return first, last, name


def email_for(first, last):
    def slug(s):
        s = s.lower().translate(TRANSLIT)
        s = unicodedata.normalize("NFKD", s)
        return "".join(ch for ch in s if ch.isascii() and ch.isalnum())

    local = slug(first) or pick(ROMANIZED)
    if slug(last):
        local += pick([".", "_", ""]) + slug(last)
    if chance(0.3):
        local += str(R.randint(1, 99))
    if chance(0.1):
        local += "+" + pick(["billing", "news", "test", "work"])
    return f"{local}@{pick(DOMAINS)}"


def address():
    line1, line2, city, pc, country, state = pick(CITIES)
    return {"line1": line1, "line2": line2, "city": city, "state": state, "postal_code": pc, "country": country}


def sentences(k=None):
    k = k or R.randint(1, 3)
    return " ".join(R.sample(JOINABLE_SENTENCES, k))


def metadata():
    m = {}
    for _ in range(R.randint(1, 4)):
        k = pick(["order_ref", "crm_id", "source", "campaign", "customer_tier", "region", "sales_rep", "note"])
        if k == "order_ref":
            m[k] = f"A-{R.randint(1000, 99999)}"
        elif k == "crm_id":
            m[k] = f"0015g00000{alnum(8)}"
        elif k == "source":
            m[k] = pick(["web", "ios", "android", "pos", "api", "import"])
        elif k == "campaign":
            m[k] = pick(["spring_sale_2024", "referral", "black-friday", "newsletter_june"])
        elif k == "customer_tier":
            m[k] = pick(["gold", "silver", "bronze"])
        elif k == "region":
            m[k] = pick(["EMEA", "NA", "LATAM", "APAC"])
        elif k == "sales_rep":
            m[k] = person()[2]
        else:
            m[k] = pick(SENTENCES)
    return m


# ---------------------------------------------------------------------------------------------
# Headers: hosts, user agents, credentials
# ---------------------------------------------------------------------------------------------

HOSTS = ["api.example.com", "api.example.com", "api.example.com", "api.acme.example", "billing.example.com",
         "app.example.com", "api.eu.example.com", "graph.example.net", "hooks.example.com", "api.example.org",
         "platform.example.io"]

SDK_UAS = [
    "stripe-python/7.1.0", "Stripe/v1 PythonBindings/7.1.0", "stripe-node/14.12.0", "Stripe/v1 NodeBindings/14.12.0",
    "okhttp/4.12.0", "okhttp/4.9.3", "curl/8.5.0", "curl/7.88.1", "curl/8.4.0", "Go-http-client/2.0",
    "Go-http-client/1.1", "axios/1.6.7", "axios/1.4.0", "python-requests/2.31.0", "python-httpx/0.26.0",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", "undici", "Dart/3.2 (dart:io)",
    "PostmanRuntime/7.36.1", "insomnia/8.6.1", "Apache-HttpClient/4.5.14 (Java/17.0.9)",
    "Java-http-client/17.0.9", "Faraday v2.9.0", "Ruby", "GuzzleHttp/7", "aws-sdk-js/3.490.0",
    "Acme-iOS/4.2.1 (com.example.acme; build:2024.6.3; iOS 17.5.1) Alamofire/5.9.1",
    "AcmeAndroid/4.2.0 (Pixel 8; Android 14) okhttp/4.12.0",
    "Microsoft.Net.Http/8.0 (+https://dotnet.microsoft.com)", "RestSharp/110.2.0.0",
    "Zapier", "Terraform/1.7.2 terraform-provider-acme/0.9.1",
]
BROWSER_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.179 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
]
BROWSER_ACCEPT = ["application/json, text/plain, */*", "*/*", "application/json",
                  "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"]
ACCEPT_LANG = ["en-US,en;q=0.9", "en-GB,en;q=0.8", "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "de-DE,de;q=0.9,en;q=0.8",
               "ja,en-US;q=0.9,en;q=0.8", "es-ES,es;q=0.9", "pt-BR,pt;q=0.9,en-US;q=0.8", "zh-CN,zh;q=0.9,en;q=0.8",
               "ru-RU,ru;q=0.9,en;q=0.8", "ko-KR,ko;q=0.9"]
ORIGINS = ["https://app.example.com", "https://dashboard.example.com", "https://www.example.com",
           "https://admin.example.org", "https://shop.example.net"]


def jwt():
    alg = pick(["RS256", "RS256", "ES256", "HS256", "PS256"])
    header = {"alg": alg, "typ": "JWT", "kid": hexs(16) if chance(0.5) else new_uuid()}
    now = ts()
    payload = {
        "iss": pick(["https://auth.example.com/", "https://login.example.org/oauth2/default",
                     "https://example.us.auth0.example/"]),
        "sub": pick([f"auth0|{hexs(24)}", obj_id("usr", 16), new_uuid()]),
        "aud": pick(["https://api.example.com", ["https://api.example.com", "https://auth.example.com/userinfo"]]),
        "iat": now,
        "exp": now + pick([300, 900, 3600, 86400]),
        "scope": pick(["openid profile email", "read:orders write:orders", "read:users offline_access",
                       "billing:read billing:write customers:read"]),
    }
    if chance(0.6):
        payload["email"] = email_for(pick(FIRST), pick(LAST))
        payload["email_verified"] = True
    if chance(0.5):
        payload["org_id"] = obj_id("org", 12)
        payload["roles"] = R.sample(["admin", "member", "billing", "viewer", "developer"], R.randint(1, 3))
    if chance(0.3):
        payload["jti"] = new_uuid()
    sig_len = {"RS256": 256, "PS256": 256, "ES256": 64, "HS256": 32}[alg]
    enc = lambda o: b64url(json.dumps(o, separators=(",", ":")).encode())
    return f"{enc(header)}.{enc(payload)}.{b64url(rbytes(sig_len))}"


def api_key():
    return pick([f"sk_live_{alnum(99)}", f"sk_test_{alnum(24)}", f"rk_live_{alnum(24)}"])


def session_cookie():
    parts = [f"session_id={alnum(32)}"] if chance(0.5) else [f"_app_session={b64url(rbytes(48))}"]
    if chance(0.6):
        parts.append(f"csrftoken={alnum(32)}")
    if chance(0.5):
        parts.append(f"_ga=GA1.2.{R.randint(100000000, 999999999)}.{ts()}")
    if chance(0.4):
        parts.append(f"theme={pick(['dark', 'light', 'system'])}")
    if chance(0.4):
        parts.append(f"locale={pick(LOCALES)}")
    if chance(0.3):
        parts.append(f"ajs_anonymous_id={new_uuid()}")
    if chance(0.2):
        parts.append(f"cookie_consent={pick(['all', 'necessary', 'analytics'])}")
    R.shuffle(parts)
    return "; ".join(parts)


def auth_headers(kind=None):
    kind = kind or pick(["jwt", "jwt", "key", "key", "cookie", "basic", "token"])
    if kind == "jwt":
        return [("Authorization", "Bearer " + jwt())]
    if kind == "key":
        if chance(0.7):
            return [("Authorization", "Bearer " + api_key())]
        return [("X-API-Key", pick([f"ak_{alnum(32)}", hexs(40), f"pk_live_{alnum(24)}"]))]
    if kind == "cookie":
        return [("Cookie", session_cookie())]
    if kind == "basic":
        user = pick([api_key(), f"AC{hexs(32)}", "apiuser@example.com"])
        return [("Authorization", "Basic " + b64(f"{user}:{alnum(20) if ':' not in user else ''}".encode()))]
    return [("Authorization", f"token ghp_{alnum(36)}")]


def base_headers(host=None, ua=None, accept=None, browser=None, auth=True, extra=()):
    browser = chance(0.25) if browser is None else browser
    ua = ua or (pick(BROWSER_UAS) if browser else pick(SDK_UAS))
    accept = accept or (pick(BROWSER_ACCEPT[:3]) if browser else pick(["application/json", "application/json",
                                                                       "*/*", "application/json; charset=utf-8"]))
    h = [("Host", host or pick(HOSTS)), ("User-Agent", ua), ("Accept", accept)]
    if browser:
        h.append(("Accept-Language", pick(ACCEPT_LANG)))
        h.append(("Accept-Encoding", "gzip, deflate, br"))
        if "Chrome/" in ua and chance(0.7):
            major = ua.split("Chrome/")[1].split(".")[0]
            h.append(("sec-ch-ua", f'"Chromium";v="{major}", "Google Chrome";v="{major}", "Not-A.Brand";v="99"'))
            h.append(("sec-ch-ua-mobile", "?1" if "Mobile" in ua else "?0"))
            h.append(("sec-ch-ua-platform", '"Android"' if "Android" in ua else pick(['"Windows"', '"macOS"'])))
        if chance(0.2):
            h.append(("X-Requested-With", "XMLHttpRequest"))
        if chance(0.15):
            h.append(("Cache-Control", "no-cache"))
            h.append(("Pragma", "no-cache"))
        if chance(0.7):
            h.append(("Origin", pick(ORIGINS)))
            h.append(("Referer", pick(ORIGINS) + pick(["/", "/dashboard", "/settings/billing", "/orders",
                                                       "/projects/" + alnum(8)])))
        if chance(0.6):
            h.append(("Sec-Fetch-Mode", "cors"))
            h.append(("Sec-Fetch-Site", "same-site"))
            h.append(("Sec-Fetch-Dest", "empty"))
    else:
        if chance(0.3):
            h.append(("Accept-Encoding", pick(["gzip", "gzip, deflate", "br, gzip"])))
        if chance(0.25):
            h.append(("Accept-Language", pick(ACCEPT_LANG)))
    if auth:
        h += auth_headers("cookie" if browser and chance(0.5) else None)
    if chance(0.45):
        h.append((pick(["X-Request-Id", "X-Request-ID", "X-Correlation-Id"]),
                  pick([new_uuid(), f"req_{alnum(14)}", hexs(32)])))
    if chance(0.15):
        h.append(("Stripe-Version" if "stripe" in ua.lower() else "X-Api-Version",
                  pick(["2024-04-10", "2023-10-16", "2", "2024-06-01"])))
    if chance(0.12):
        h.append(("traceparent", f"00-{hexs(32)}-{hexs(16)}-01"))
    if chance(0.1):
        h.append(("X-Forwarded-For", pick(["203.0.113.7", "198.51.100.42", "192.0.2.10, 203.0.113.9"])))
        h.append(("X-Forwarded-Proto", "https"))
    if chance(0.2):
        h.append(("Connection", pick(["keep-alive", "close"])))
    h += list(extra)
    return h


# ---------------------------------------------------------------------------------------------
# Request assembly
# ---------------------------------------------------------------------------------------------

REQUESTS = []
NAMES = set()
COUNTERS = {}


def add(category, label, method, uri, headers, body=None, content_type=None):
    """Record one request; body is str (UTF-8 text) or bytes (stored base64 when not valid UTF-8)."""
    COUNTERS[category] = COUNTERS.get(category, 0) + 1
    name = f"{category}-{COUNTERS[category]:04d}-{label}"
    assert name not in NAMES, name
    NAMES.add(name)
    headers = list(headers)
    rec = {"name": name, "method": method, "uri": uri}
    if body is not None:
        raw = body.encode("utf-8") if isinstance(body, str) else body
        assert content_type, name
        # Content-Type and Content-Length go after the general headers, as most clients put them.
        headers.append(("Content-Type", content_type))
        headers.append(("Content-Length", str(len(raw))))
        rec["headers"] = [list(p) for p in headers]
        try:
            text = raw.decode("utf-8")
            binary = "\x00" in text
        except UnicodeDecodeError:
            binary = True
        if binary:
            rec["body_base64"] = b64(raw)
        else:
            rec["body"] = text
    else:
        if method in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", "0"))
        rec["headers"] = [list(p) for p in headers]
    REQUESTS.append(rec)


def jdump(obj, pretty=None):
    pretty = chance(0.2) if pretty is None else pretty
    if pretty:
        return json.dumps(obj, indent=2, ensure_ascii=chance(0.3))
    return json.dumps(obj, separators=(",", ":") if chance(0.6) else (", ", ": "), ensure_ascii=chance(0.25))


def json_ct():
    return pick(["application/json", "application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8"])


def qs(pairs, plus=None):
    """Encode query pairs; spaces as + (form style) or %20, brackets kept or escaped like real clients do."""
    plus = chance(0.5) if plus is None else plus
    keep_brackets = chance(0.5)
    out = []
    for k, v in pairs:
        ks = quote(k, safe="[]" if keep_brackets else "")
        vs = quote_plus(str(v), safe=",:") if plus else quote(str(v), safe=",:")
        out.append(f"{ks}={vs}")
    return "&".join(out)


def with_qs(path, pairs, plus=None):
    return path + ("?" + qs(pairs, plus) if pairs else "")


# ---------------------------------------------------------------------------------------------
# Resources for REST CRUD
# ---------------------------------------------------------------------------------------------


def customer_body():
    first, last, name = person()
    b = {"name": name, "email": email_for(first, last)}
    if chance(0.7):
        b["phone"] = pick(PHONES)
    if chance(0.6):
        b["address"] = address()
    if chance(0.5):
        b["description"] = sentences(1)
    if chance(0.5):
        b["metadata"] = metadata()
    if chance(0.3):
        b["preferred_locales"] = R.sample(LOCALES, R.randint(1, 2))
    if chance(0.3):
        b["tax_exempt"] = pick(["none", "exempt", "reverse"])
    return b


def order_body():
    items = []
    for _ in range(R.randint(1, 6)):
        items.append({"sku": f"SKU-{R.randint(10000, 99999)}", "name": pick(PRODUCTS), "quantity": R.randint(1, 5),
                      "unit_price": money(), "discountable": chance(0.7)})
    first, last, name = person()
    return {
        "customer": {"id": obj_id("cus"), "email": email_for(first, last)},
        "currency": pick(CURRENCIES),
        "items": items,
        "shipping": {"name": name, "phone": pick(PHONES), "address": address(),
                     "method": pick(["standard", "express", "pickup"])},
        "notes": pick(SENTENCES) if chance(0.6) else None,
        "gift": chance(0.1),
        "coupon": pick([None, "SPRING24", "WELCOME10", "FREESHIP"]),
        "placed_at": iso(ms=True),
    }


def invoice_body():
    return {
        "customer": obj_id("cus"),
        "collection_method": pick(["charge_automatically", "send_invoice"]),
        "days_until_due": pick([7, 14, 30, 45]),
        "description": pick(SENTENCES),
        "footer": pick(["Thank you for your business!", "Payment terms: net 30.", "Questions? billing@example.com"]),
        "lines": [{"description": pick(PRODUCTS), "amount": money(), "quantity": R.randint(1, 10)}
                  for _ in range(R.randint(1, 5))],
        "auto_advance": chance(0.5),
        "metadata": metadata(),
    }


def subscription_body():
    return {
        "customer": obj_id("cus"),
        "items": [{"price": obj_id("price", 24), "quantity": R.randint(1, 25)} for _ in range(R.randint(1, 3))],
        "trial_period_days": pick([None, 7, 14, 30]),
        "proration_behavior": pick(["create_prorations", "none", "always_invoice"]),
        "cancel_at_period_end": chance(0.2),
        "default_payment_method": obj_id("pm", 24),
        "metadata": metadata(),
    }


def product_body():
    return {
        "name": pick(PRODUCTS),
        "description": sentences(2),
        "active": chance(0.9),
        "images": [f"https://cdn.example.com/img/{hexs(12)}.{pick(['png', 'jpg', 'webp'])}" for _ in range(R.randint(0, 3))],
        "attributes": {"color": pick(["navy", "black", "sand", "olive"]), "size": pick(["S", "M", "L", "XL", "42"])},
        "price": {"unit_amount": money(), "currency": pick(CURRENCIES), "tax_behavior": pick(["inclusive", "exclusive"])},
        "shippable": chance(0.6),
        "weight_grams": R.randint(50, 12000),
        "tags": R.sample(TAGS, R.randint(0, 3)),
    }


def user_body():
    first, last, name = person()
    return {
        "first_name": first, "last_name": last, "display_name": name, "email": email_for(first, last),
        "role": pick(["admin", "member", "viewer", "billing_manager"]), "timezone": pick(TIMEZONES),
        "locale": pick(LOCALES), "title": pick(["Head of Ops", "Engineer", "CFO", "Support lead", "Designer", None]),
        "notifications": {"email": chance(0.8), "sms": chance(0.3), "weekly_digest": chance(0.5)},
        "avatar_url": f"https://cdn.example.com/avatars/{new_uuid()}.png" if chance(0.5) else None,
    }


def task_body():
    return {
        "title": pick(TITLES), "description": pick(MARKDOWN) if chance(0.4) else sentences(),
        "status": pick(["todo", "in_progress", "blocked", "done"]), "priority": pick(["low", "medium", "high", "urgent"]),
        "assignee_id": obj_id("usr", 10), "due_date": day(), "labels": R.sample(TAGS, R.randint(0, 3)),
        "estimate_hours": pick([0.5, 1, 2, 3.5, 8, 13]), "checklist": [
            {"text": pick(["Draft copy", "Review with legal", "Ship it", "Update screenshots", "Email customers"]),
             "done": chance(0.5)} for _ in range(R.randint(0, 4))],
    }


def comment_body():
    first, last, name = person()
    return {"body": pick(MARKDOWN) if chance(0.3) else sentences(), "author": {"name": name},
            "mentions": [obj_id("usr", 10) for _ in range(R.randint(0, 2))], "internal": chance(0.4)}


def contact_body():
    first, last, name = person()
    return {"first_name": first, "last_name": last, "email": email_for(first, last), "phone": pick(PHONES),
            "company": pick(COMPANIES), "lifecycle_stage": pick(["lead", "mql", "sql", "customer"]),
            "address": address(), "tags": R.sample(TAGS, R.randint(0, 4)), "owner_id": R.randint(1000, 9999),
            "custom_fields": {"industry": pick(["Retail", "Healthcare", "SaaS", "Logistics"]),
                              "employees": pick(["1-10", "11-50", "51-200", "201-1000"]),
                              "nps": R.randint(0, 10)}}


def shipment_body():
    return {"order_id": obj_id("ord"), "carrier": pick(["UPS", "DHL Express", "FedEx", "Royal Mail", "La Poste", "Yamato"]),
            "tracking_number": pick(["1Z999AA10123456784", f"JD0146000{R.randint(10000000, 99999999)}", alnum(12).upper()]),
            "service": pick(["ground", "2day", "overnight", "international_economy"]),
            "parcels": [{"weight": {"value": round(R.uniform(0.1, 20), 2), "unit": "kg"},
                         "dimensions": {"length": R.randint(10, 80), "width": R.randint(10, 60), "height": R.randint(2, 40), "unit": "cm"}}
                        for _ in range(R.randint(1, 3))],
            "ship_to": address(), "signature_required": chance(0.3)}


def ticket_body():
    first, last, name = person()
    return {"subject": pick(["Can't log in", "Refund request", "Question about my invoice", "Feature request: dark mode",
                             "Shipping delay", "Change of address", "Problème de facturation", "注文のキャンセル"]),
            "description": pick(MARKDOWN) if chance(0.3) else sentences(),
            "requester": {"name": name, "email": email_for(first, last)},
            "priority": pick(["low", "normal", "high"]), "channel": pick(["email", "chat", "phone", "web"]),
            "tags": R.sample(TAGS, R.randint(0, 3)), "custom_fields": [{"id": R.randint(100, 999), "value": pick(["yes", "no", "n/a", 3])}]}


def webhook_endpoint_body():
    return {"url": f"https://hooks.{pick(DOMAINS)}/{pick(['stripe', 'billing', 'events', 'integrations/acme'])}/{alnum(10)}",
            "enabled_events": R.sample(["invoice.paid", "invoice.payment_failed", "customer.created", "customer.updated",
                                        "charge.refunded", "checkout.session.completed", "subscription.deleted"], R.randint(1, 4)),
            "description": pick(["Production endpoint", "Staging", "Zapier integration", "Data warehouse sync"]),
            "api_version": pick(["2024-04-10", "2023-10-16"])}


def project_body():
    return {"name": pick(TITLES), "key": alnum(3, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"), "description": sentences(),
            "visibility": pick(["private", "internal", "public"]), "color": pick(COLORS),
            "start_date": day(), "members": [{"user_id": obj_id("usr", 10), "role": pick(["owner", "editor", "viewer"])}
                                            for _ in range(R.randint(1, 5))], "archived": False}


def coupon_body():
    return {"id": pick(["SPRING24", "WELCOME10", "VIP-2024", "FRIENDS15"]) + alnum(2, "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"),
            "percent_off": pick([None, 10, 15, 25, 50]), "amount_off": pick([None, 500, 1000]), "currency": "usd",
            "duration": pick(["once", "repeating", "forever"]), "duration_in_months": pick([None, 3, 6, 12]),
            "max_redemptions": pick([None, 100, 1000]), "redeem_by": ts() + 86400 * 60, "name": "Spring promo 🌷"}


def campaign_body():
    return {"name": pick(["June newsletter", "Product launch – EU", "Win-back (inactive 90d)", "Webinar invite"]),
            "subject": pick(["Don't miss our summer sale ☀️", "What's new in June", "Your invoice is ready",
                             "Last chance: 20% off ends tonight"]),
            "from": {"name": pick(COMPANIES), "email": f"news@{pick(DOMAINS)}"},
            "audience_id": obj_id("aud", 10), "send_at": iso(), "track_opens": True, "track_clicks": chance(0.8),
            "preheader": pick(SENTENCES)}


RESOURCES = [
    ("customers", "cus", customer_body), ("orders", "ord", order_body), ("invoices", "in", invoice_body),
    ("subscriptions", "sub", subscription_body), ("products", "prod", product_body), ("users", "usr", user_body),
    ("tasks", "task", task_body), ("comments", "cmt", comment_body), ("contacts", "ct", contact_body),
    ("shipments", "shp", shipment_body), ("tickets", "tkt", ticket_body),
    ("webhook_endpoints", "we", webhook_endpoint_body), ("projects", "proj", project_body),
    ("coupons", "co", coupon_body), ("campaigns", "cmp", campaign_body),
]
RES_PREFIX = {res: prefix for res, prefix, _ in RESOURCES}
API_PREFIXES = ["/v1", "/v1", "/v2", "/api/v1", "/api/v3", "/api/2024-06"]
ACTIONS = [("invoices", "finalize"), ("invoices", "pay"), ("invoices", "void"), ("invoices", "send"),
           ("subscriptions", "cancel"), ("subscriptions", "resume"), ("orders", "fulfill"), ("orders", "cancel"),
           ("tickets", "close"), ("users", "reset_password"), ("projects", "archive"), ("campaigns", "schedule")]


def gen_crud(n):
    methods = ["GET", "GET", "GET", "POST", "POST", "PUT", "PATCH", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    for i in range(n):
        res, prefix, body_fn = RESOURCES[i % len(RESOURCES)]
        method = methods[(i * 7 + i // len(RESOURCES)) % len(methods)]
        api = pick(API_PREFIXES)
        oid = obj_id(prefix) if chance(0.7) else str(R.randint(1, 9999999))
        nested = chance(0.2)
        base = f"{api}/{res}"
        if nested:
            parent, pprefix = pick([("projects", "proj"), ("accounts", "acct"), ("workspaces", "ws"), ("orgs", "org")])
            base = f"{api}/{parent}/{obj_id(pprefix, 10)}/{res}"
        browser = chance(0.2)
        if method == "GET":
            if chance(0.5):
                uri = base
                if chance(0.6):
                    uri = with_qs(base, [("limit", pick([10, 20, 25, 50, 100]))] +
                                  ([("starting_after", obj_id(prefix))] if chance(0.4) else []))
                label = f"list-{res}"
            else:
                uri = f"{base}/{oid}"
                if chance(0.3):
                    uri = with_qs(uri, [("expand[]", pick(["customer", "latest_invoice", "items.data.price", "owner"]))])
                label = f"get-{res}"
            extra = [("If-None-Match", f'W/"{hexs(16)}"' if chance(0.5) else f'"{hexs(32)}"')] if chance(0.3) else []
            add("crud", label, "GET", uri, base_headers(browser=browser, extra=extra))
        elif method == "HEAD":
            uri = f"{base}/{oid}"
            extra = [("If-None-Match", f'"{hexs(20)}"')] if chance(0.6) else []
            if chance(0.3):
                extra.append(("If-Modified-Since", pick(["Wed, 21 Feb 2024 07:28:00 GMT", "Mon, 03 Jun 2024 12:00:00 GMT"])))
            add("crud", f"head-{res}", "HEAD", uri, base_headers(browser=False, extra=extra))
        elif method == "OPTIONS":
            uri = pick([base, f"{base}/{oid}"])
            origin = pick(ORIGINS)
            h = [("Host", pick(HOSTS)), ("User-Agent", pick(BROWSER_UAS)), ("Accept", "*/*"),
                 ("Accept-Language", pick(ACCEPT_LANG)), ("Accept-Encoding", "gzip, deflate, br"),
                 ("Origin", origin), ("Access-Control-Request-Method", pick(["POST", "PUT", "PATCH", "DELETE", "GET"])),
                 ("Access-Control-Request-Headers", pick(["authorization,content-type", "authorization,content-type,idempotency-key",
                                                          "content-type,x-request-id", "authorization"])),
                 ("Referer", origin + "/"), ("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Site", "same-site"),
                 ("Sec-Fetch-Dest", "empty"), ("Connection", "keep-alive")]
            add("crud", f"preflight-{res}", "OPTIONS", uri, h)
        elif method == "DELETE":
            uri = f"{base}/{oid}"
            extra = [("Idempotency-Key", new_uuid())] if chance(0.3) else []
            if chance(0.2):
                uri = with_qs(uri, [("prorate", "true")] if res == "subscriptions" else [("force", "false")])
            add("crud", f"delete-{res}", "DELETE", uri, base_headers(browser=browser, extra=extra))
        else:
            body = body_fn()
            if method == "PATCH":
                keys = R.sample(sorted(body), max(1, len(body) // 3))
                body = {k: body[k] for k in keys}
            if method == "POST" and chance(0.15):
                res2, action = pick(ACTIONS)
                uri = f"{api}/{res2}/{obj_id(RES_PREFIX[res2])}/{action}"
                extra = [("Idempotency-Key", new_uuid())]
                if chance(0.5):
                    add("crud", f"action-{res2}-{action}", "POST", uri, base_headers(browser=browser, extra=extra))
                else:
                    add("crud", f"action-{res2}-{action}", "POST", uri, base_headers(browser=browser, extra=extra),
                        jdump({"reason": pick(["requested_by_customer", "duplicate", "fraudulent"]), "comment": pick(SENTENCES)}),
                        json_ct())
                continue
            uri = base if method == "POST" else f"{base}/{oid}"
            extra = [("Idempotency-Key", new_uuid())] if method == "POST" and chance(0.6) else []
            if method in ("PUT", "PATCH") and chance(0.3):
                extra.append(("If-Match", f'"{hexs(24)}"'))
            add("crud", f"{method.lower()}-{res}", method, uri, base_headers(browser=browser, extra=extra),
                jdump(body), json_ct())


# ---------------------------------------------------------------------------------------------
# Query strings
# ---------------------------------------------------------------------------------------------


def cursor():
    c = {"id": obj_id(pick(["cus", "ord", "evt", "in"])), "ts": ts()}
    if chance(0.5):
        c["dir"] = pick(["next", "prev"])
    raw = json.dumps(c, separators=(",", ":")).encode()
    return pick([b64(raw), b64url(raw), b64url(rbytes(R.randint(12, 48)))])


def gen_query(n):
    kinds = ["paginate", "filter", "search", "sparse", "utm", "oauth", "report", "geo", "openapi"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        api = pick(API_PREFIXES)
        res, prefix, _ = pick(RESOURCES)
        browser = chance(0.3)
        pairs = []
        path = f"{api}/{res}"
        if kind == "paginate":
            style = pick(["page", "cursor", "stripe", "offset"])
            if style == "page":
                pairs = [("page", R.randint(1, 40)), ("per_page", pick([10, 25, 50, 100]))]
            elif style == "cursor":
                pairs = [("limit", pick([20, 50, 100])), ("cursor", cursor())]
            elif style == "stripe":
                pairs = [("limit", pick([3, 10, 100])), (pick(["starting_after", "ending_before"]), obj_id(prefix))]
            else:
                pairs = [("offset", R.randint(0, 2000)), ("limit", pick([25, 50]))]
            if chance(0.6):
                pairs.append(("sort", pick(["-created_at", "-created_at,name", "name", "updated_at", "-amount,id", "due_date"])))
            if chance(0.3):
                pairs.append(("include_total", "true"))
        elif kind == "filter":
            pairs = [("filter[status]", pick(["active", "past_due", "canceled", "trialing", "open"]))]
            if chance(0.7):
                pairs.append(("created[gte]", iso()))
            if chance(0.5):
                pairs.append(("created[lt]", day()))
            if chance(0.4):
                pairs.append(("filter[tags][]", pick(TAGS)))
                pairs.append(("filter[tags][]", pick(TAGS)))
            if chance(0.4):
                pairs.append(("amount[gt]", R.randint(0, 10000)))
            if chance(0.4):
                pairs.append(("filter[email]", email_for(pick(FIRST), pick(LAST))))
            if chance(0.3):
                pairs.append(("status", pick(["paid,open", "draft", "void"])))
            if chance(0.3):
                pairs.append(("customer", obj_id("cus")))
            if chance(0.3):
                pairs.append(("updated_since", iso(ms=True)))
            if chance(0.3):
                pairs.append(("filter[country]", pick(["US", "DE", "JP", "BR", "FR"])))
            if chance(0.25):
                pairs.append(("filter[name][contains]", pick(["O'Brien", "café", "Harbor & Pine", "smith"])))
            if chance(0.25):
                pairs += [("ids[]", obj_id(prefix)) for _ in range(R.randint(2, 5))]
            elif chance(0.2):
                pairs.append(("id", ",".join(str(R.randint(100, 99999)) for _ in range(R.randint(2, 8)))))
            if chance(0.2):
                pairs.append(("include_deleted", "false"))
            pairs.append(("limit", pick([10, 25, 50])))
        elif kind == "search":
            path = pick([f"{api}/search", f"{api}/{res}/search", f"{api}/{res}"])
            term = pick(SEARCH_TERMS)
            if chance(0.15):
                term = f'"{term}"'
            elif chance(0.15):
                term = f"{term} {pick(['in:title', 'status:open', 'is:unread', 'tag:vip', '-archived'])}"
            pairs = [("q", term)]
            if chance(0.5):
                pairs.append(("type", pick(["customer", "order", "product", "all"])))
            if chance(0.4):
                pairs.append(("page", R.randint(1, 5)))
            if chance(0.3):
                pairs.append(("highlight", "true"))
            if chance(0.3):
                pairs.append(("lang", pick(["en", "fr", "de", "ja"])))
        elif kind == "sparse":
            path = f"{api}/{res}/{obj_id(prefix)}" if chance(0.5) else path
            pairs = []
            if chance(0.6):
                pairs.append(("fields", pick(["id,name,email", "id,status,total,currency", "id,title,due_date,assignee"])))
            if chance(0.5):
                pairs.append(("include", pick(["customer,line_items", "author", "owner,members.user", "items.product"])))
            if chance(0.5):
                pairs.append(("expand[]", pick(["customer", "data.customer", "latest_invoice.payment_intent"])))
                if chance(0.5):
                    pairs.append(("expand[]", pick(["default_payment_method", "data.invoice", "subscription"])))
            if chance(0.3):
                pairs.append(("fields[orders]", "total,status"))
                pairs.append(("fields[customers]", "name"))
            if not pairs:
                pairs.append(("fields", "id,name"))
        elif kind == "utm":
            path = pick(["/", "/pricing", "/signup", "/blog/whats-new-in-june", "/landing/spring-sale", "/r/" + alnum(6)])
            pairs = [("utm_source", pick(["newsletter", "google", "linkedin", "twitter", "partner_site"])),
                     ("utm_medium", pick(["email", "cpc", "social", "referral"])),
                     ("utm_campaign", pick(["spring_sale_2024", "product-launch", "webinar june", "brand"]))]
            if chance(0.5):
                pairs.append(("utm_content", pick(["cta_button", "header link", "footer"])))
            if chance(0.4):
                pairs.append(("utm_term", pick(["running shoes", "crm software", "invoice app"])))
            if chance(0.3):
                pairs.append((pick(["gclid", "fbclid", "msclkid"]), alnum(R.randint(30, 90), ALNUM + "-_")))
            if chance(0.3):
                pairs.append(("ref", pick(["producthunt", "hn", "friend"])))
            browser = True
        elif kind == "oauth":
            path = pick(["/oauth/authorize", "/authorize", "/oauth2/v1/authorize", "/connect/authorize"])
            redirect = pick(["https://app.example.com/auth/callback", "https://www.example.org/oauth/callback",
                             "https://integrations.example.net/acme/callback?tenant=" + alnum(8),
                             "com.example.acme:/oauthredirect"])
            pairs = [("response_type", pick(["code", "code", "code id_token"])), ("client_id", alnum(32)),
                     ("redirect_uri", redirect), ("scope", pick(["openid profile email", "openid profile email offline_access",
                                                                 "read:orders write:orders", "repo user:email"])),
                     ("state", b64url(rbytes(24)))]
            if chance(0.7):
                pairs += [("code_challenge", b64url(hashlib.sha256(rbytes(32)).digest())), ("code_challenge_method", "S256")]
            if chance(0.5):
                pairs.append(("nonce", alnum(24)))
            if chance(0.3):
                pairs.append(("prompt", pick(["consent", "login", "none"])))
            if chance(0.2):
                pairs.append(("ui_locales", pick(["fr-FR", "de", "ja"])))
            # OAuth clients always percent-encode the redirect and use %20 in scope.
            enc = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in pairs)
            add("query", "oauth-authorize", "GET", f"{path}?{enc}", base_headers(browser=True, auth=False))
            continue
        elif kind == "report":
            path = pick([f"{api}/reports/revenue", f"{api}/analytics/events", f"{api}/usage", f"{api}/metrics/timeseries"])
            pairs = [("start", day()), ("end", day()), ("granularity", pick(["hour", "day", "week", "month"])),
                     ("timezone", pick(TIMEZONES))]
            if chance(0.5):
                pairs.append(("group_by", pick(["country", "plan,country", "product"])))
            if chance(0.4):
                pairs.append(("metrics", pick(["mrr,arr,churn_rate", "sessions,pageviews", "requests,errors,p95_latency_ms"])))
            if chance(0.3):
                pairs.append(("currency", pick(CURRENCIES)))
            if chance(0.3):
                pairs.append(("compare", "previous_period"))
        elif kind == "geo":
            path = pick([f"{api}/stores/nearby", f"{api}/geocode", f"{api}/delivery/quotes"])
            pairs = [("lat", round(R.uniform(-60, 70), 6)), ("lng", round(R.uniform(-170, 170), 6)),
                     ("radius", pick(["5km", "10mi", "2500"]))]
            if chance(0.5):
                line1, _, city, pc, country, _ = pick(CITIES)
                pairs = [("address", f"{line1}, {city} {pc}"), ("country", country)]
            if chance(0.4):
                pairs.append(("open_now", "true"))
        else:
            path = pick([f"{api}/{res}/{obj_id(prefix)}/events", f"{api}/events", f"{api}/audit_logs"])
            pairs = [("type", pick(["invoice.paid", "customer.*", "charge.refunded,charge.failed"])),
                     ("created[gte]", ts()), ("delivery_success", pick(["true", "false"]))]
            if chance(0.5):
                pairs.append(("actor", email_for(pick(FIRST), pick(LAST))))
            if chance(0.4):
                pairs.append(("ip", pick(["203.0.113.7", "198.51.100.42", "2001:db8::1"])))
        extra = []
        if chance(0.2):
            extra.append(("If-None-Match", f'W/"{hexs(12)}"'))
        add("query", kind, "GET", with_qs(path, pairs), base_headers(browser=browser, extra=extra))


# ---------------------------------------------------------------------------------------------
# Rich JSON bodies
# ---------------------------------------------------------------------------------------------


def gen_json(n):
    kinds = ["unicode", "escapes", "blob", "bulk", "markdown", "nested", "numbers", "profile", "checkout", "settings",
             "analytics", "translation", "template", "blob", "bulk"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        api = pick(API_PREFIXES)
        method = "POST"
        path = None
        raw_text = None
        if kind == "unicode":
            first, last, name = person()
            body = {"name": pick(INTL_NAMES), "company": pick(COMPANIES), "note": pick(INTL_SENTENCES),
                    "address": address(), "greeting": pick(["¡Hola!", "Grüß Gott", "こんにちは", "Привет", "مرحبا", "안녕하세요", "Olá 👋"]),
                    "emoji_reactions": R.sample(["👍", "🎉", "❤️", "😂", "🚀", "✅", "👍🏽", "🇯🇵"], 3)}
            path = f"{api}/contacts"
        elif kind == "escapes":
            first, last, name = person()
            body = {"name": name, "title": pick(TITLES), "description": sentences(2), "city": pick(["Montréal", "Zürich", "São Paulo", "Kraków", "Reykjavík"])}
            raw_text = json.dumps(body, ensure_ascii=True)  # \u00e9-style escapes for every non-ASCII char
            path = pick([f"{api}/customers", f"{api}/notes", f"{api}/leads"])
        elif kind == "blob":
            size = R.randint(1536, 6144)
            blob = rbytes(size)
            body = {"filename": pick(["receipt-1043.pdf", "avatar.png", "signature.png", "scan_0001.jpg", "contract-v2.pdf"]),
                    "content_type": pick(["application/pdf", "image/png", "image/jpeg"]),
                    "content": b64(blob), "sha256": hashlib.sha256(blob).hexdigest(), "size": size,
                    "purpose": pick(["dispute_evidence", "identity_document", "customer_signature", "attachment"])}
            if chance(0.3):
                body["public_key"] = b64(rbytes(R.randint(270, 550)))
            path = pick([f"{api}/files", f"{api}/attachments", f"{api}/documents/upload"])
        elif kind == "bulk":
            count = R.randint(100, 220)
            style = pick(["events", "ids", "rows", "prices"])
            if style == "events":
                body = {"batch": [{"event": pick(["Page Viewed", "Signed Up", "Order Completed", "Product Added", "Logged In"]),
                                   "userId": obj_id("usr", 8), "timestamp": iso(ms=True),
                                   "properties": {"path": pick(["/", "/pricing", "/cart", "/docs/api"]), "value": R.randint(0, 500),
                                                  "plan": pick(["free", "pro", "team"])}} for _ in range(count)],
                        "sentAt": iso(ms=True)}
                path = "/v1/batch"
            elif style == "ids":
                body = {"ids": [obj_id(pick(["cus", "ord", "in"])) for _ in range(count)], "action": pick(["archive", "export", "tag"]),
                        "tag": pick(TAGS)}
                path = f"{api}/bulk/{pick(['customers', 'orders', 'invoices'])}"
            elif style == "rows":
                body = {"columns": ["sku", "name", "qty", "price"],
                        "rows": [[f"SKU-{R.randint(10000, 99999)}", pick(PRODUCTS), R.randint(0, 300), round(R.uniform(1, 400), 2)]
                                 for _ in range(count)], "upsert": True}
                path = f"{api}/inventory/import"
            else:
                body = {"prices": [{"product": obj_id("prod"), "unit_amount": money(), "currency": pick(CURRENCIES),
                                    "active": chance(0.9), "nickname": None} for _ in range(count)]}
                path = f"{api}/prices/batch"
        elif kind == "markdown":
            body = {"title": pick(TITLES), "body": pick(MARKDOWN), "format": "markdown", "draft": chance(0.3),
                    "author_id": obj_id("usr", 10), "notify_subscribers": chance(0.5)}
            path = pick([f"{api}/posts", f"{api}/issues/{R.randint(1, 900)}/comments", f"{api}/pages", f"{api}/changelog"])
        elif kind == "nested":
            body = {"workflow": {"name": pick(TITLES), "enabled": True, "trigger": {"type": "event", "event": pick(["order.created", "ticket.created"])},
                                 "steps": [{"id": f"step_{k}", "type": pick(["delay", "email", "condition", "webhook", "tag"]),
                                            "config": {"minutes": pick([5, 60, 1440]), "template_id": obj_id("tmpl", 8),
                                                       "conditions": [{"field": pick(["total", "country", "plan"]),
                                                                       "operator": pick(["equals", "greater_than", "in", "not_equals"]),
                                                                       "value": pick([100, "DE", ["pro", "team"], True, None])}]},
                                            "next": [f"step_{k + 1}"] if k < 3 else []} for k in range(R.randint(2, 5))]},
                    "version": R.randint(1, 40), "updated_at": iso()}
            path = f"{api}/workflows"
        elif kind == "numbers":
            body = {"amount": money(), "currency": pick(CURRENCIES), "exchange_rate": round(R.uniform(0.5, 160), 6),
                    "tax_rate": pick([0.0, 0.07, 0.19, 0.2, 0.25]), "discount": pick([None, 0, 10.5]),
                    "quantity": R.randint(-3, 1000), "scientific": pick([1.5e-7, 6.02e23, 2.5e10]), "big": 9007199254740991,
                    "coordinates": [round(R.uniform(-90, 90), 7), round(R.uniform(-180, 180), 7)],
                    "flags": {"paid": chance(0.5), "refunded": False, "disputed": None}}
            path = pick([f"{api}/payment_intents", f"{api}/quotes", f"{api}/charges"])
        elif kind == "profile":
            body = user_body()
            body["bio"] = pick(SENTENCES) + " " + pick(["Coffee lover ☕", "Based in Berlin 🇩🇪", "Dog mom 🐶", "(she/her)", "Runner & reader"])
            body["social"] = {"twitter": "@" + alnum(8, "abcdefghijklmnop_"), "website": f"https://{alnum(6, 'abcdefghij')}.{pick(DOMAINS)}"}
            method = pick(["PATCH", "PUT", "POST"])
            path = pick([f"{api}/me", f"{api}/users/{obj_id('usr', 10)}", f"{api}/profile"])
        elif kind == "checkout":
            first, last, name = person()
            body = {"mode": pick(["payment", "subscription"]), "line_items": [{"price": obj_id("price", 24), "quantity": R.randint(1, 4)}
                                                                             for _ in range(R.randint(1, 4))],
                    "success_url": "https://shop.example.com/checkout/success?order={CHECKOUT_REFERENCE}",
                    "cancel_url": "https://shop.example.com/cart", "customer_email": email_for(first, last),
                    "billing_address_collection": "required", "allow_promotion_codes": True,
                    "shipping_address_collection": {"allowed_countries": R.sample(["US", "CA", "GB", "DE", "FR", "JP", "AU"], 4)},
                    "locale": pick(["auto", "fr", "de", "ja"]), "metadata": metadata()}
            path = "/v1/checkout/sessions"
        elif kind == "settings":
            body = {"branding": {"primary_color": pick(COLORS), "logo_url": f"https://cdn.example.com/logos/{hexs(10)}.svg",
                                 "font": pick(["Inter", "Roboto", "system-ui"])},
                    "notifications": {"invoice_paid": {"email": True, "slack": chance(0.5)}, "weekly_report": {"day": "monday", "hour": 9}},
                    "security": {"mfa_required": chance(0.6), "session_timeout_minutes": pick([30, 60, 480]),
                                 "allowed_domains": R.sample(DOMAINS, 2)},
                    "locale": pick(LOCALES), "timezone": pick(TIMEZONES), "fiscal_year_start": "04-01"}
            method = pick(["PUT", "PATCH"])
            path = f"{api}/accounts/{obj_id('acct', 16)}/settings"
        elif kind == "analytics":
            body = {"type": "track", "event": pick(["Checkout Started", "Feature Used", "Search Performed"]),
                    "anonymousId": new_uuid(), "context": {"app": {"name": "Acme", "version": "4.2.1", "build": "421"},
                                                          "device": {"model": pick(["iPhone15,2", "Pixel 8", "SM-S918B"]),
                                                                     "manufacturer": pick(["Apple", "Google", "Samsung"])},
                                                          "locale": pick(LOCALES), "timezone": pick(TIMEZONES),
                                                          "screen": {"width": pick([390, 412, 1440]), "height": pick([844, 915, 900])},
                                                          "campaign": {"source": "newsletter", "medium": "email"}},
                    "properties": {"query": pick(SEARCH_TERMS), "results": R.randint(0, 80), "duration_ms": R.randint(3, 900)},
                    "timestamp": iso(ms=True), "messageId": new_uuid()}
            path = "/v1/track"
        elif kind == "template":
            html = pick(TEMPLATES[:4])
            body = {"name": pick(["Invoice ready", "Order shipped", "Welcome", "Receipt"]) + f" v{R.randint(1, 9)}",
                    "subject": pick(["Your invoice from {{company}}", "Your order is on its way", "Welcome to Acme 👋"]),
                    "html_content": html, "plain_content": pick(TEMPLATES[4:]),
                    "from": {"email": f"no-reply@{pick(DOMAINS)}", "name": pick(COMPANIES)},
                    "reply_to": f"support@{pick(DOMAINS)}", "categories": R.sample(["billing", "transactional", "onboarding"], 2),
                    "test_data": {"first_name": pick(FIRST), "invoice_number": R.randint(1000, 9999)}}
            method = pick(["POST", "PATCH"])
            path = pick([f"{api}/templates", f"{api}/templates/{obj_id('tmpl', 10)}/versions", "/v3/templates"])
        else:
            src = pick([x for x in SENTENCES if x.isascii()])
            body = {"source_language": "en", "target_languages": R.sample(["fr", "de", "es", "ja", "zh", "ru", "ar", "pt"], 3),
                    "segments": [{"id": k, "text": pick(SENTENCES)} for k in range(R.randint(2, 8))],
                    "glossary": {"invoice": {"fr": "facture", "de": "Rechnung", "ja": "請求書"}}, "context": src}
            path = f"{api}/translations"
        text = raw_text if raw_text is not None else jdump(body)
        extra = [("Idempotency-Key", new_uuid())] if method == "POST" and chance(0.5) else []
        add("json", kind, method, path, base_headers(browser=chance(0.2), extra=extra), text, json_ct())


# ---------------------------------------------------------------------------------------------
# Form-urlencoded
# ---------------------------------------------------------------------------------------------


def form(pairs):
    return urlencode(pairs, quote_via=quote_plus)


def gen_form(n):
    kinds = ["login", "token_code", "token_refresh", "token_client", "newsletter", "contact", "stripe_charge",
             "stripe_customer", "signup", "twilio_sms", "search", "revoke"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        browser = False
        ua = None
        auth = True
        extra = []
        if kind == "login":
            first, last, _ = person()
            pairs = [("email", email_for(first, last)), ("password", alnum(R.randint(10, 20), ALNUM + "!@#%^*-_.")),
                     ("remember_me", pick(["1", "on", "true"])), ("csrf_token", b64url(rbytes(32)))]
            if chance(0.3):
                pairs.append(("redirect", pick(["/dashboard", "/settings/billing", "/orders?status=open"])))
            path = pick(["/login", "/session", "/account/sign_in", "/auth/login"])
            browser, auth = True, False
        elif kind == "token_code":
            pairs = [("grant_type", "authorization_code"), ("code", alnum(R.randint(30, 64), ALNUM + "-_")),
                     ("redirect_uri", pick(["https://app.example.com/auth/callback", "https://www.example.org/oauth/callback"])),
                     ("client_id", alnum(32))]
            if chance(0.6):
                pairs.append(("code_verifier", b64url(rbytes(48))))
            else:
                pairs.append(("client_secret", alnum(48)))
            path = pick(["/oauth/token", "/oauth2/v1/token", "/connect/token", "/login/oauth/access_token"])
            auth = False
        elif kind == "token_refresh":
            pairs = [("grant_type", "refresh_token"), ("refresh_token", pick([b64url(rbytes(48)), "v1." + b64url(rbytes(64)), jwt()])),
                     ("client_id", alnum(32))]
            if chance(0.4):
                pairs.append(("scope", "openid profile email offline_access"))
            path = "/oauth/token"
            auth = False
        elif kind == "token_client":
            pairs = [("grant_type", "client_credentials"), ("scope", pick(["read:orders", "billing:read billing:write", "api"]))]
            if chance(0.5):
                pairs.append(("audience", "https://api.example.com"))
            cid, secret = alnum(24), alnum(40)
            extra = [("Authorization", "Basic " + b64(f"{cid}:{secret}".encode()))]
            path = "/oauth/token"
            auth = False
        elif kind == "newsletter":
            first, last, _ = person()
            pairs = [("email", email_for(first, last)), ("first_name", first), ("list", pick(["weekly", "product-updates", "deals"])),
                     ("consent", "yes"), ("source", pick(["footer", "blog sidebar", "exit popup"]))]
            if chance(0.4):
                pairs += [("utm_source", "blog"), ("utm_campaign", "june_digest")]
            path = pick(["/newsletter/subscribe", "/api/subscribe", "/forms/newsletter"])
            browser, auth = True, False
        elif kind == "contact":
            first, last, name = person()
            pairs = [("name", name), ("email", email_for(first, last)), ("company", pick(COMPANIES)),
                     ("phone", pick(PHONES)), ("subject", pick(["Sales inquiry", "Partnership", "Billing question", "Press"])),
                     ("message", sentences(R.randint(2, 4)) + ("\r\n\r\n" + pick(["Best,", "Thanks!", "Cheers"]) + "\r\n" + first)),
                     ("how_did_you_hear", pick(["Google search", "A friend (word of mouth)", "Podcast", "Conference booth"]))]
            if chance(0.5):
                pairs.append(("budget", pick(["< $1k", "$1k-$10k", "$10k+"])))
            path = pick(["/contact", "/api/contact", "/forms/contact-sales"])
            browser, auth = True, False
        elif kind == "stripe_charge":
            pairs = [("amount", money()), ("currency", pick(CURRENCIES)), ("customer", obj_id("cus")),
                     ("description", pick(PRODUCTS)), ("metadata[order_id]", str(R.randint(1000, 99999))),
                     ("metadata[source]", "web"), ("payment_method_types[]", "card")]
            if chance(0.5):
                pairs.append(("expand[]", "latest_charge"))
            if chance(0.4):
                pairs.append(("receipt_email", email_for(pick(FIRST), pick(LAST))))
            if chance(0.3):
                pairs.append(("statement_descriptor_suffix", "ORDER " + str(R.randint(100, 999))))
            path = "/v1/payment_intents"
            ua = pick(["stripe-python/7.1.0", "Stripe/v1 RubyBindings/10.5.0", "Stripe/v1 PhpBindings/13.9.0", "stripe-node/14.12.0"])
            extra = [("Authorization", "Bearer " + api_key()), ("Idempotency-Key", new_uuid()), ("Stripe-Version", "2024-04-10")]
            auth = False
        elif kind == "stripe_customer":
            first, last, name = person()
            a = address()
            pairs = [("name", name), ("email", email_for(first, last)), ("phone", pick(PHONES)),
                     ("address[line1]", a["line1"]), ("address[city]", a["city"]), ("address[postal_code]", a["postal_code"]),
                     ("address[country]", a["country"]), ("metadata[crm_id]", alnum(12)), ("preferred_locales[0]", pick(LOCALES)[:2])]
            if chance(0.4):
                pairs.append(("description", pick(SENTENCES)))
            path = pick(["/v1/customers", f"/v1/customers/{obj_id('cus')}"])
            ua = pick(["stripe-python/7.1.0", "Stripe/v1 PythonBindings/7.1.0", "Stripe/v1 JavaBindings/24.3.0"])
            extra = [("Authorization", "Bearer " + api_key())]
            auth = False
        elif kind == "signup":
            first, last, name = person()
            pairs = [("user[name]", name), ("user[email]", email_for(first, last)), ("user[password]", alnum(16)),
                     ("user[company]", pick(COMPANIES)), ("user[timezone]", pick(TIMEZONES)), ("plan", pick(["free", "pro", "team"])),
                     ("terms", "accepted"), ("authenticity_token", b64(rbytes(32)))]
            path = "/users"
            browser, auth = True, False
        elif kind == "twilio_sms":
            pairs = [("To", pick(PHONES)), ("From", "+14155550100"), ("Body", pick(["Your order has shipped! Track it here: https://t.example.com/" + alnum(6),
                                                                                   "Your verification code is " + str(R.randint(100000, 999999)),
                                                                                   "Reminder: your appointment is tomorrow at 10:30.",
                                                                                   "Thanks for your payment of $42.50 – see you soon!"])),
                     ("StatusCallback", "https://hooks.example.com/twilio/status")]
            path = f"/2010-04-01/Accounts/AC{hexs(32)}/Messages.json"
            ua = "twilio-python/8.12.0 (Linux x86_64) Python/3.11.7"
            extra = [("Authorization", "Basic " + b64(f"AC{hexs(32)}:{hexs(32)}".encode()))]
            auth = False
        elif kind == "search":
            pairs = [("q", pick(SEARCH_TERMS)), ("category", pick(["all", "docs", "community"])), ("page", R.randint(1, 4))]
            path = "/search"
            browser, auth = True, False
        else:
            pairs = [("token", pick([b64url(rbytes(32)), alnum(40)])), ("token_type_hint", pick(["access_token", "refresh_token"])),
                     ("client_id", alnum(32))]
            path = pick(["/oauth/revoke", "/oauth2/v1/revoke"])
            auth = False
        h = base_headers(browser=browser, ua=ua, auth=auth, extra=extra)
        add("form", kind, "POST", path, h, form(pairs),
            pick(["application/x-www-form-urlencoded", "application/x-www-form-urlencoded",
                  "application/x-www-form-urlencoded; charset=UTF-8", "application/x-www-form-urlencoded;charset=utf-8"]))


# ---------------------------------------------------------------------------------------------
# Multipart uploads
# ---------------------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG_MAGIC = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
PDF_MAGIC = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
GIF_MAGIC = b"GIF89a"
WEBP_MAGIC = b"RIFF\x00\x10\x00\x00WEBPVP8 "
IMAGE_STEMS = ["avatar", "profile-photo", "IMG-20240612-WA0003", "IMG_4821", "screenshot-2024-06-12", "logo-dark",
               "banner_summer", "product-photo-3", "team-offsite", "Foto de perfil", "photo_2024", "floor-plan", "レシート"]
DOC_STEMS = ["receipt-june", "invoice-1043", "scan-0001", "contract-signed", "passport", "expense-report-q2", "w9-form",
             "insurance-card", "menu-summer", "Lebenslauf Müller", "quote-2024-118", "floor-plan"]


def stem_for(ext):
    return pick(DOC_STEMS if ext == "pdf" else IMAGE_STEMS)


def binary_file(kind):
    if kind == "png":
        data = PNG_MAGIC + R.randint(64, 1024).to_bytes(4, "big") + R.randint(64, 1024).to_bytes(4, "big") + b"\x08\x06\x00\x00\x00"
        data += rbytes(4) + b"\x00\x00\x00\x19tEXtSoftware\x00Acme Image Kit" + rbytes(R.randint(300, 2500)) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
        return data, "image/png", "png"
    if kind == "jpeg":
        return JPEG_MAGIC + b"\xff\xdb\x00\x43\x00" + rbytes(R.randint(300, 2500)) + b"\xff\xd9", "image/jpeg", pick(["jpg", "jpeg"])
    if kind == "pdf":
        return (PDF_MAGIC + b"2 0 obj\n<< /Length 1200 /Filter /FlateDecode >>\nstream\n" + rbytes(R.randint(300, 2500)) +
                b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"), "application/pdf", "pdf"
    if kind == "gif":
        return GIF_MAGIC + b"\x10\x00\x10\x00\x80\x00\x00" + rbytes(R.randint(100, 800)) + b"\x3b", "image/gif", "gif"
    return WEBP_MAGIC + rbytes(R.randint(200, 1500)), "image/webp", "webp"


def csv_file():
    rows = ["email,first_name,last_name,plan,signup_date,mrr"]
    for _ in range(R.randint(5, 40)):
        first, last, _ = person()
        last_csv = f'"{last}"' if "," in last or "'" in last else last
        rows.append(f"{email_for(first, last)},{first},{last_csv},{pick(['free', 'pro', 'team'])},{day()},{R.randint(0, 900)}.00")
    return ("\r\n".join(rows) + "\r\n").encode(), pick(["text/csv", "text/csv", "application/vnd.ms-excel"]), "csv"


def text_file():
    lines = [pick(TITLES), "", sentences(3), "", pick(MARKDOWN)]
    return "\n".join(lines).encode(), pick(["text/plain", "text/plain", "text/markdown"]), pick(["txt", "md"])


def multipart(parts, boundary):
    out = b""
    for p in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        disp = f'form-data; name="{p["name"]}"'
        if "filename" in p:
            disp += f'; filename="{p["filename"]}"'
        out += f"Content-Disposition: {disp}\r\n".encode("utf-8")
        if "type" in p:
            out += f"Content-Type: {p['type']}\r\n".encode()
        out += b"\r\n" + p["data"] + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return out


def boundary():
    style = pick(["webkit", "dashes", "okhttp", "python", "curl"])
    if style == "webkit":
        return "----WebKitFormBoundary" + alnum(16)
    if style == "dashes":
        return "-" * 27 + "".join(R.choice("0123456789") for _ in range(29))
    if style == "okhttp":
        return new_uuid()
    if style == "python":
        return hexs(32)
    return "------------------------" + hexs(16)


def gen_multipart(n):
    kinds = ["avatar", "document", "csv_import", "gallery", "attachment", "kyc", "text_note", "mixed"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        api = pick(API_PREFIXES)
        parts = []
        if kind == "avatar":
            data, ct, ext = binary_file(pick(["png", "jpeg", "webp"]))
            parts = [{"name": pick(["avatar", "file", "image"]), "filename": f"{stem_for(ext)}.{ext}", "type": ct, "data": data}]
            if chance(0.5):
                parts.append({"name": "crop", "data": json.dumps({"x": 0, "y": 12, "width": 256, "height": 256}).encode()})
            path = pick([f"{api}/me/avatar", f"{api}/users/{obj_id('usr', 10)}/avatar"])
        elif kind == "document":
            data, ct, ext = binary_file("pdf")
            parts = [{"name": "purpose", "data": pick([b"dispute_evidence", b"identity_document", b"business_logo", b"additional_verification"])},
                     {"name": "file", "filename": f"{stem_for(ext)}.{ext}", "type": ct, "data": data}]
            path = pick(["/v1/files", f"{api}/documents"])
        elif kind == "csv_import":
            data, ct, ext = csv_file()
            parts = [{"name": "file", "filename": f"{pick(['customers-export', 'contacts', 'price-list', 'inventory-2024-06', 'subscribers'])}.csv",
                      "type": ct, "data": data},
                     {"name": "has_header", "data": b"true"}, {"name": "delimiter", "data": b","},
                     {"name": "on_duplicate", "data": pick([b"skip", b"update", b"create"])}]
            path = pick([f"{api}/imports", f"{api}/contacts/import", f"{api}/lists/{obj_id('lst', 8)}/members/import"])
        elif kind == "gallery":
            parts = []
            for k in range(R.randint(2, 4)):
                data, ct, ext = binary_file(pick(["png", "jpeg", "gif"]))
                parts.append({"name": "images[]", "filename": f"{pick(['product', 'lookbook', 'IMG', 'detail'])}-{k + 1}.{ext}", "type": ct, "data": data})
            parts.append({"name": "album", "data": pick(TITLES).encode()})
            parts.append({"name": "caption", "data": pick(SENTENCES).encode()})
            path = f"{api}/products/{obj_id('prod')}/images"
        elif kind == "attachment":
            data, ct, ext = binary_file(pick(["pdf", "png", "jpeg"]))
            parts = [{"name": "message", "data": sentences(2).encode()},
                     {"name": "attachments[]", "filename": f"{stem_for(ext)}.{ext}", "type": ct, "data": data}]
            if chance(0.5):
                tdata, tct, text = text_file()
                parts.append({"name": "attachments[]", "filename": f"notes.{text}", "type": tct, "data": tdata})
            path = pick([f"{api}/tickets/{R.randint(1000, 99999)}/comments", f"{api}/conversations/{obj_id('conv', 10)}/messages"])
        elif kind == "kyc":
            first, last, name = person()
            a = address()
            front, ct, ext = binary_file("jpeg")
            parts = [{"name": "first_name", "data": first.encode()}, {"name": "last_name", "data": (last or name).encode()},
                     {"name": "dob", "data": f"19{R.randint(50, 99)}-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}".encode()},
                     {"name": "address[line1]", "data": a["line1"].encode()}, {"name": "address[city]", "data": a["city"].encode()},
                     {"name": "document_type", "data": pick([b"passport", b"id_card", b"residence_permit"])},
                     {"name": "document_front", "filename": f"id-front.{ext}", "type": ct, "data": front}]
            path = f"{api}/verifications"
        elif kind == "text_note":
            tdata, tct, text = text_file()
            parts = [{"name": "file", "filename": f"{pick(['notes', 'transcript', 'readme', 'meeting-notes'])}.{text}", "type": tct, "data": tdata},
                     {"name": "title", "data": pick(TITLES).encode()}, {"name": "folder_id", "data": obj_id("fld", 8).encode()}]
            path = f"{api}/notes/upload"
        else:
            data, ct, ext = binary_file(pick(["png", "pdf", "jpeg"]))
            meta = {"title": pick(TITLES), "tags": R.sample(TAGS, 2), "description": pick(SENTENCES)}
            parts = [{"name": "metadata", "type": "application/json", "data": json.dumps(meta, ensure_ascii=False).encode()},
                     {"name": "file", "filename": f"{stem_for(ext)}.{ext}", "type": ct, "data": data},
                     {"name": "visibility", "data": pick([b"private", b"team", b"public"])}]
            path = pick([f"{api}/assets", f"{api}/media", "/upload"])
        while True:
            b = boundary()
            body = multipart(parts, b)
            if body.count(b.encode()) == len(parts) + 1:
                break
        browser = chance(0.35)
        ct_header = f"multipart/form-data; boundary={b}"
        extra = [("Idempotency-Key", new_uuid())] if chance(0.3) else []
        add("multipart", kind, "POST", path, base_headers(browser=browser, extra=extra), body, ct_header)


# ---------------------------------------------------------------------------------------------
# GraphQL
# ---------------------------------------------------------------------------------------------

GQL_OPS = [
    ("GetMember", "query GetMember($id: ID!) { member(id: $id) { id name email avatarUrl createdAt } }",
     lambda: {"id": obj_id("usr", 10)}),
    ("ListOrders", "query ListOrders($pageSize: Int!, $after: String, $status: OrderStatus) {\n  orders(first: $pageSize, after: $after, status: $status) {\n"
                   "    edges { cursor order: node { id number total { amount currencyCode } customer { name } } }\n"
                   "    pageInfo { hasNextPage endCursor }\n  }\n}",
     lambda: {"pageSize": pick([10, 20, 50]), "after": pick([None, cursor()]), "status": pick(["OPEN", "FULFILLED", "CANCELLED"])}),
    ("ViewerProjects", "query ViewerProjects { viewer { login projects(first: 20, orderBy: {field: UPDATED_AT, direction: DESC}) { nodes { id title updatedAt } } } }",
     lambda: None),
    ("CreateCustomer", "mutation CreateCustomer($input: CustomerInput!) { customerCreate(input: $input) { customer { id email } userErrors { field message } } }",
     lambda: {"input": customer_body()}),
    ("UpdateTask", "mutation UpdateTask($id: ID!, $patch: TaskPatch!) {\n  updateTask(id: $id, patch: $patch) {\n    id\n    title\n    status\n    updatedAt\n  }\n}",
     lambda: {"id": obj_id("task", 10), "patch": {"status": pick(["DONE", "IN_PROGRESS"]), "title": pick(TITLES)}}),
    ("AddComment", "mutation AddComment($subjectId: ID!, $body: String!) { addComment(input: {subjectId: $subjectId, body: $body}) { commentEdge { comment: node { id url } } } }",
     lambda: {"subjectId": obj_id("issue", 12), "body": pick(MARKDOWN) if chance(0.4) else sentences()}),
    ("SearchProducts", "query SearchProducts($q: String!, $limit: Int = 10) { search(query: $q, first: $limit, type: PRODUCT) { nodes { ... on Product { id title priceRange { min max } } } } }",
     lambda: {"q": pick(SEARCH_TERMS), "limit": pick([5, 10, 25])}),
    ("InvoiceDetails", "query InvoiceDetails($number: String!) {\n  invoice(number: $number) {\n    number\n    dueDate\n    lines { description quantity amount }\n    ...InvoiceTotals\n  }\n}\n\n"
                       "fragment InvoiceTotals on Invoice {\n  subtotal\n  tax\n  total\n}",
     lambda: {"number": f"INV-{R.randint(1000, 9999)}"}),
    ("Dashboard", "query Dashboard($from: DateTime!, $to: DateTime!) { stats(from: $from, to: $to) { revenue signups churnRate activeUsers } notifications(unreadOnly: true) { totalCount } }",
     lambda: {"from": iso(), "to": iso()}),
    ("UpdateShippingAddress", "mutation UpdateShippingAddress($orderId: ID!, $address: AddressInput!) { orderUpdateShippingAddress(orderId: $orderId, address: $address) { order { id } } }",
     lambda: {"orderId": obj_id("ord"), "address": address()}),
    ("OnOrderUpdated", "subscription OnOrderUpdated($storeId: ID!) { orderUpdated(storeId: $storeId) { id status updatedAt } }",
     lambda: {"storeId": obj_id("store", 8)}),
    ("RepoIssues", "query RepoIssues($owner: String!, $name: String!, $labels: [String!]) { repository(owner: $owner, name: $name) { issues(first: 30, labels: $labels, states: OPEN) { totalCount nodes { number title author { login } } } } }",
     lambda: {"owner": pick(["acme", "kite-analytics", "bluebird"]), "name": pick(["web", "api", "mobile-app"]), "labels": R.sample(["bug", "good first issue", "help wanted", "docs"], 2)}),
]


def gen_graphql(n):
    for i in range(n):
        op, query, var_fn = GQL_OPS[i % len(GQL_OPS)]
        variables = var_fn()
        path = pick(["/graphql", "/graphql", "/api/graphql", "/v1/graphql", "/admin/api/2024-04/graphql.json"])
        browser = chance(0.35)
        host = pick(["graph.example.net", "api.example.com", "app.example.com"])
        is_get = query.startswith("query") and chance(0.3)
        if is_get:
            pairs = [("query", query if chance(0.5) else " ".join(query.split()))]
            if variables is not None:
                pairs.append(("variables", json.dumps(variables, separators=(",", ":"), ensure_ascii=False)))
            pairs.append(("operationName", op))
            if chance(0.3):
                pairs = [("operationName", op), ("variables", json.dumps(variables or {}, separators=(",", ":"), ensure_ascii=False)),
                         ("extensions", json.dumps({"persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}},
                                                   separators=(",", ":")))]
            uri = path + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in pairs)
            add("graphql", f"get-{op}", "GET", uri, base_headers(host=host, browser=browser,
                                                              accept=pick(["application/json", "application/graphql-response+json, application/json"])))
        else:
            if chance(0.15):
                body = [{"operationName": op, "query": query, "variables": variables},
                        {"operationName": "ViewerProjects", "query": GQL_OPS[2][1], "variables": {}}]
            else:
                body = {"operationName": op, "query": query, "variables": variables}
                if chance(0.2):
                    del body["operationName"]
            extra = []
            if chance(0.3):
                extra.append(("apollographql-client-name", pick(["web", "ios", "android"])))
                extra.append(("apollographql-client-version", pick(["4.2.1", "2024.06.1"])))
            add("graphql", f"post-{op}", "POST", path, base_headers(host=host, browser=browser, extra=extra),
                jdump(body), json_ct())


# ---------------------------------------------------------------------------------------------
# Webhook deliveries
# ---------------------------------------------------------------------------------------------

WEBHOOK_SECRET = b"whsec_benign_corpus_fixture_secret"


def stripe_event():
    etype = pick(["invoice.paid", "invoice.payment_failed", "customer.subscription.updated", "charge.refunded",
                  "checkout.session.completed", "payment_intent.succeeded", "customer.created"])
    first, last, name = person()
    prefix, kind = {"invoice": ("in", "invoice"), "customer": ("cus", "customer"), "subscription": ("sub", "subscription"),
                    "charge": ("ch", "charge"), "session": ("cs", "checkout.session"),
                    "payment_intent": ("pi", "payment_intent")}[etype.split(".")[-2]]
    obj = {"id": obj_id(prefix, 24), "object": kind,
           "amount": money(), "currency": pick(CURRENCIES), "customer": obj_id("cus"), "customer_email": email_for(first, last),
           "customer_name": name, "livemode": True, "metadata": metadata(), "status": pick(["paid", "succeeded", "active", "complete"]),
           "created": ts(), "lines": {"object": "list", "data": [{"id": obj_id("il", 24), "amount": money(), "description": pick(PRODUCTS),
                                                                   "period": {"start": ts(), "end": ts()}} for _ in range(R.randint(1, 3))],
                                       "has_more": False, "url": f"/v1/invoices/{obj_id('in', 24)}/lines"}}
    if chance(0.3):
        obj["shipping"] = {"name": name, "address": address()}
    return {"id": obj_id("evt", 24), "object": "event", "api_version": "2024-04-10", "created": ts(),
            "data": {"object": obj, "previous_attributes": {"status": "open"} if chance(0.3) else None},
            "livemode": True, "pending_webhooks": R.randint(1, 3), "request": {"id": obj_id("req", 14), "idempotency_key": new_uuid()},
            "type": etype}


def github_event():
    event = pick(["push", "pull_request", "issues", "issue_comment", "release", "workflow_run"])
    owner = pick(["acme", "kite-analytics", "bluebird-bakery"])
    repo = pick(["web", "api", "mobile-app", "infra", "docs"])
    full = f"{owner}/{repo}"
    user = {"login": alnum(8, "abcdefghijklmnopqrstuvwxyz-"), "id": R.randint(1000, 9999999), "type": "User",
            "html_url": "https://github.com/" + alnum(8, "abcdefghijklmnopqrstuvwxyz")}
    repository = {"id": R.randint(10000000, 800000000), "name": repo, "full_name": full, "private": chance(0.7),
                  "html_url": f"https://github.com/{full}", "default_branch": pick(["main", "master"]),
                  "owner": {"login": owner, "type": "Organization"}}
    if event == "push":
        commits = [{"id": hexs(40), "message": pick(COMMIT_MESSAGES), "timestamp": iso(),
                    "author": {"name": person()[2], "email": email_for(pick(FIRST), pick(LAST))},
                    "added": [pick(["src/orders/list.ts", "docs/webhooks.md", "tests/test_invoice.py"])], "removed": [],
                    "modified": [pick(["README.md", "src/app.tsx", "src/api/orders.ts", "CHANGELOG.md"])]} for _ in range(R.randint(1, 4))]
        payload = {"ref": "refs/heads/" + pick(["main", "feature/export", "fix/typo"]), "before": hexs(40), "after": hexs(40),
                   "repository": repository, "pusher": {"name": user["login"]}, "sender": user, "created": False,
                   "deleted": False, "forced": False, "commits": commits, "head_commit": commits[-1]}
    elif event in ("pull_request", "issues"):
        item = {"number": R.randint(1, 3000), "title": pick(COMMIT_MESSAGES), "body": pick(MARKDOWN), "state": "open",
                "user": user, "labels": [{"name": l} for l in R.sample(["bug", "enhancement", "docs", "good first issue"], 2)],
                "created_at": iso(), "html_url": f"https://github.com/{full}/issues/{R.randint(1, 3000)}"}
        payload = {"action": pick(["opened", "closed", "edited", "labeled"]), event.rstrip("s") if event == "issues" else event: item,
                   "repository": repository, "sender": user}
    elif event == "issue_comment":
        payload = {"action": "created", "issue": {"number": R.randint(1, 3000), "title": pick(COMMIT_MESSAGES), "state": "open"},
                   "comment": {"id": R.randint(10 ** 8, 10 ** 9), "body": sentences(), "user": user, "created_at": iso()},
                   "repository": repository, "sender": user}
    elif event == "release":
        payload = {"action": "published", "release": {"tag_name": f"v{R.randint(1, 5)}.{R.randint(0, 20)}.{R.randint(0, 9)}",
                                                      "name": "Release " + pick(["June", "4.2", "2024.06"]), "body": pick(MARKDOWN),
                                                      "draft": False, "prerelease": chance(0.2), "published_at": iso()},
                   "repository": repository, "sender": user}
    else:
        payload = {"action": "completed", "workflow_run": {"id": R.randint(10 ** 9, 10 ** 10), "name": pick(["CI", "Deploy", "Release"]),
                                                           "head_branch": "main", "head_sha": hexs(40), "status": "completed",
                                                           "conclusion": pick(["success", "failure", "cancelled"]), "run_number": R.randint(1, 5000)},
                   "repository": repository, "sender": user}
    return event, payload


def gen_webhook(n):
    kinds = ["stripe", "github", "shopify", "slack", "sendgrid", "twilio", "generic", "calendly"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        host = pick(["hooks.example.com", "api.example.com", "app.example.com"])
        if kind == "stripe":
            text = json.dumps(stripe_event(), indent=2)
            t = ts()
            sig = hmac.new(WEBHOOK_SECRET, f"{t}.{text}".encode(), hashlib.sha256).hexdigest()
            h = [("Host", host), ("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)"), ("Accept", "*/*; q=0.5, application/xml"),
                 ("Cache-Control", "no-cache"), ("Stripe-Signature", f"t={t},v1={sig},v0={hexs(64)}")]
            add("webhook", "stripe", "POST", pick(["/webhooks/stripe", "/api/webhooks/stripe", "/hooks/billing"]), h, text,
                "application/json; charset=utf-8")
        elif kind == "github":
            event, payload = github_event()
            text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            sig = hmac.new(WEBHOOK_SECRET, text.encode(), hashlib.sha256).hexdigest()
            h = [("Host", host), ("User-Agent", f"GitHub-Hookshot/{hexs(7)}"), ("Accept", "*/*"),
                 ("X-GitHub-Delivery", new_uuid()), ("X-GitHub-Event", event), ("X-GitHub-Hook-ID", str(R.randint(10 ** 8, 10 ** 9))),
                 ("X-GitHub-Hook-Installation-Target-ID", str(R.randint(10 ** 6, 10 ** 9))),
                 ("X-GitHub-Hook-Installation-Target-Type", "repository"),
                 ("X-Hub-Signature", "sha1=" + hmac.new(WEBHOOK_SECRET, text.encode(), hashlib.sha1).hexdigest()),
                 ("X-Hub-Signature-256", "sha256=" + sig)]
            add("webhook", f"github-{event}", "POST", pick(["/webhooks/github", "/api/github/events", "/integrations/github/webhook"]),
                h, text, "application/json")
        elif kind == "shopify":
            first, last, name = person()
            payload = {"id": R.randint(10 ** 12, 10 ** 13), "email": email_for(first, last), "created_at": iso(), "currency": pick(CURRENCIES).upper(),
                       "total_price": f"{R.randint(5, 900)}.{R.randint(0, 99):02d}", "financial_status": pick(["paid", "pending", "refunded"]),
                       "line_items": [{"title": pick(PRODUCTS), "quantity": R.randint(1, 3), "price": f"{R.randint(5, 200)}.00",
                                       "sku": f"SKU-{R.randint(10000, 99999)}", "vendor": pick(COMPANIES)} for _ in range(R.randint(1, 5))],
                       "shipping_address": {"name": name, "address1": address()["line1"], "phone": pick(PHONES)},
                       "note": pick(SENTENCES) if chance(0.5) else None, "tags": ", ".join(R.sample(TAGS, 2))}
            text = json.dumps(payload, ensure_ascii=False)
            topic = pick(["orders/create", "orders/paid", "customers/update", "refunds/create"])
            h = [("Host", host), ("User-Agent", "Shopify-Captain-Hook"), ("Accept", "*/*"),
                 ("X-Shopify-Topic", topic), ("X-Shopify-Shop-Domain", f"{pick(['bluebird', 'copper-kettle', 'zephyr'])}.myshopify.com"),
                 ("X-Shopify-Hmac-Sha256", b64(hmac.new(WEBHOOK_SECRET, text.encode(), hashlib.sha256).digest())),
                 ("X-Shopify-Webhook-Id", new_uuid()), ("X-Shopify-API-Version", "2024-04"), ("X-Shopify-Triggered-At", iso(ms=True))]
            add("webhook", "shopify-" + topic.replace("/", "-"), "POST", "/webhooks/shopify", h, text, "application/json")
        elif kind == "slack":
            t = ts()
            if chance(0.5):
                payload = {"token": alnum(24), "team_id": "T" + alnum(8, "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"), "api_app_id": "A" + alnum(10, "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"),
                           "event": {"type": "message", "channel": "C" + alnum(8, "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"), "user": "U" + alnum(8, "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"),
                                     "text": pick(SENTENCES) + " :tada:", "ts": f"{t}.{R.randint(100000, 999999)}"},
                           "type": "event_callback", "event_id": "Ev" + alnum(9, "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"), "event_time": t}
                text, ct = json.dumps(payload, ensure_ascii=False), "application/json"
            else:
                text = form([("token", alnum(24)), ("team_id", "T" + alnum(8).upper()), ("team_domain", "acme"), ("channel_name", "support"),
                             ("user_name", alnum(6, "abcdefghijklmnopqrstuvwxyz")), ("command", "/ticket"),
                             ("text", pick(["new Printer on floor 3 is jammed again", "status of order 1043", "help"])),
                             ("response_url", "https://hooks.slack.com/commands/T0000/" + str(R.randint(10 ** 9, 10 ** 10)) + "/" + alnum(24)),
                             ("trigger_id", f"{R.randint(10 ** 9, 10 ** 10)}.{R.randint(10 ** 9, 10 ** 10)}.{hexs(32)}")])
                ct = "application/x-www-form-urlencoded"
            sig = "v0=" + hmac.new(WEBHOOK_SECRET, f"v0:{t}:{text}".encode(), hashlib.sha256).hexdigest()
            h = [("Host", host), ("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)"), ("Accept", "application/json,*/*"),
                 ("X-Slack-Request-Timestamp", str(t)), ("X-Slack-Signature", sig)]
            add("webhook", "slack", "POST", pick(["/slack/events", "/slack/commands", "/integrations/slack"]), h, text, ct)
        elif kind == "sendgrid":
            events = []
            for _ in range(R.randint(3, 30)):
                first, last, _ = person()
                events.append({"email": email_for(first, last), "timestamp": ts(), "event": pick(["delivered", "open", "click", "bounce", "processed"]),
                               "sg_event_id": b64url(rbytes(16)), "sg_message_id": f"{alnum(22)}.filter{R.randint(1, 9)}-{R.randint(1000, 9999)}-{alnum(8)}-1",
                               "category": [pick(["newsletter", "receipt", "password_reset"])], "useragent": pick(BROWSER_UAS),
                               "url": f"https://www.example.com/pricing?utm_source=newsletter&utm_medium=email"})
            text = json.dumps(events)
            h = [("Host", host), ("User-Agent", "SendGrid Event API"), ("Accept", "*/*"),
                 ("X-Twilio-Email-Event-Webhook-Signature", b64(rbytes(70))), ("X-Twilio-Email-Event-Webhook-Timestamp", str(ts()))]
            add("webhook", "sendgrid", "POST", "/webhooks/sendgrid/events", h, text, "application/json")
        elif kind == "twilio":
            pairs = [("ToCountry", "US"), ("ToState", "CA"), ("SmsMessageSid", "SM" + hexs(32)), ("NumMedia", "0"),
                     ("ToCity", "SAN FRANCISCO"), ("FromZip", "94105"), ("SmsSid", "SM" + hexs(32)), ("FromState", "CA"),
                     ("SmsStatus", "received"), ("FromCity", "SAN FRANCISCO"),
                     ("Body", pick(["Yes, please confirm my appointment for tomorrow", "STOP", "Where's my order? It's been a week",
                                    "Thanks! 👍", "Can I change the delivery time to after 5pm?"])),
                     ("FromCountry", "US"), ("To", "+14155550100"), ("MessageSid", "SM" + hexs(32)), ("AccountSid", "AC" + hexs(32)),
                     ("From", pick(PHONES)), ("ApiVersion", "2010-04-01")]
            text = form(pairs)
            h = [("Host", host), ("User-Agent", "TwilioProxy/1.1"), ("Accept", "*/*"), ("X-Twilio-Signature", b64(rbytes(20))),
                 ("I-Twilio-Idempotency-Token", new_uuid())]
            add("webhook", "twilio", "POST", "/twilio/sms/inbound", h, text, "application/x-www-form-urlencoded; charset=UTF-8")
        elif kind == "generic":
            first, last, name = person()
            payload = {"id": new_uuid(), "type": pick(["user.created", "subscription.renewed", "payment.failed", "export.completed"]),
                       "created_at": iso(ms=True), "attempt": R.randint(1, 5),
                       "data": {"user": {"id": obj_id("usr", 10), "name": name, "email": email_for(first, last)},
                                "plan": pick(["pro", "team", "enterprise"]), "amount": money(), "download_url": f"https://files.example.com/exports/{new_uuid()}.csv"}}
            text = json.dumps(payload, ensure_ascii=False)
            t = ts()
            msg_id = "msg_" + alnum(27)
            sig = b64(hmac.new(WEBHOOK_SECRET, f"{msg_id}.{t}.{text}".encode(), hashlib.sha256).digest())
            h = [("Host", host), ("User-Agent", pick(["Svix-Webhooks/1.21.0", "Acme-Webhooks/2.0", "Go-http-client/2.0"])), ("Accept", "*/*"),
                 ("webhook-id", msg_id), ("webhook-timestamp", str(t)), ("webhook-signature", f"v1,{sig}")]
            add("webhook", "generic", "POST", pick(["/webhooks/acme", "/api/v1/hooks/incoming", "/events/receive"]), h, text, "application/json")
        else:
            first, last, name = person()
            payload = {"event": pick(["invitee.created", "invitee.canceled"]), "created_at": iso(ms=True),
                       "payload": {"email": email_for(first, last), "name": name, "timezone": pick(TIMEZONES),
                                   "questions_and_answers": [{"question": "Anything we should know before the call?", "answer": pick(SENTENCES)},
                                                             {"question": "Company size", "answer": pick(["1-10", "11-50", "51-200"])}],
                                   "scheduled_event": {"name": "30 Minute Meeting", "start_time": iso(), "end_time": iso(),
                                                       "location": {"type": "zoom", "join_url": f"https://zoom.example.com/j/{R.randint(10 ** 9, 10 ** 10)}"}},
                                   "cancel_url": f"https://calendly.example.com/cancellations/{new_uuid()}",
                                   "reschedule_url": f"https://calendly.example.com/reschedulings/{new_uuid()}"}}
            text = json.dumps(payload)
            t = ts()
            h = [("Host", host), ("User-Agent", "Calendly-Webhooks"), ("Accept", "application/json"),
                 ("Calendly-Webhook-Signature", f"t={t},v1={hmac.new(WEBHOOK_SECRET, f'{t}.{text}'.encode(), hashlib.sha256).hexdigest()}")]
            add("webhook", "calendly", "POST", "/webhooks/calendly", h, text, "application/json")


# ---------------------------------------------------------------------------------------------
# XML: SOAP, RSS, Atom, plain XML APIs
# ---------------------------------------------------------------------------------------------


def xesc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&apos;")


def gen_xml(n):
    kinds = ["soap_order", "soap_rate", "rss", "atom", "plain_invoice", "sitemap"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        extra = []
        if kind == "soap_order":
            first, last, name = person()
            a = address()
            items = "".join(f"<ord:Item><ord:Sku>SKU-{R.randint(10000, 99999)}</ord:Sku><ord:Description>{xesc(pick(PRODUCTS))}</ord:Description>"
                            f"<ord:Quantity>{R.randint(1, 9)}</ord:Quantity><ord:UnitPrice currency=\"EUR\">{R.randint(1, 300)}.{R.randint(0, 99):02d}</ord:UnitPrice></ord:Item>"
                            for _ in range(R.randint(1, 4)))
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ord="http://example.com/schemas/orders/v2">\n'
                    f'  <soapenv:Header><ord:AuthToken>{alnum(40)}</ord:AuthToken></soapenv:Header>\n'
                    f'  <soapenv:Body>\n    <ord:CreateOrderRequest>\n      <ord:Customer><ord:Name>{xesc(name)}</ord:Name><ord:Email>{email_for(first, last)}</ord:Email></ord:Customer>\n'
                    f'      <ord:ShipTo><ord:Street>{xesc(a["line1"])}</ord:Street><ord:City>{xesc(a["city"])}</ord:City><ord:PostalCode>{xesc(a["postal_code"])}</ord:PostalCode><ord:Country>{a["country"]}</ord:Country></ord:ShipTo>\n'
                    f'      <ord:Items>{items}</ord:Items>\n      <ord:Notes>{xesc(pick(SENTENCES))}</ord:Notes>\n    </ord:CreateOrderRequest>\n  </soapenv:Body>\n</soapenv:Envelope>\n')
            ct = pick(["text/xml; charset=utf-8", "text/xml"])
            extra = [("SOAPAction", '"http://example.com/schemas/orders/v2/CreateOrder"')]
            path = "/soap/OrderService"
        elif kind == "soap_rate":
            body = ('<?xml version="1.0" encoding="utf-8"?>\n'
                    '<soap12:Envelope xmlns:soap12="http://www.w3.org/2003/05/soap-envelope" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
                    '<soap12:Body><GetShippingRate xmlns="http://example.com/shipping/">'
                    f'<OriginPostalCode>{pick(CITIES)[3]}</OriginPostalCode><DestinationPostalCode>{pick(CITIES)[3]}</DestinationPostalCode>'
                    f'<WeightKg>{round(R.uniform(0.2, 30), 2)}</WeightKg><Service>{pick(["Express", "Economy", "Standard"])}</Service>'
                    f'<Insured>{pick(["true", "false"])}</Insured><DeclaredValue currency="USD">{R.randint(10, 2000)}</DeclaredValue>'
                    '</GetShippingRate></soap12:Body></soap12:Envelope>')
            ct = 'application/soap+xml; charset=utf-8; action="http://example.com/shipping/GetShippingRate"'
            path = pick(["/services/ShippingRates.asmx", "/ws/shipping"])
        elif kind == "rss":
            items = "".join(f"<item><title>{xesc(pick(TITLES))}</title><link>https://blog.example.com/posts/{alnum(8, 'abcdefghijklmnopqrstuvwxyz')}</link>"
                            f"<description>{xesc(sentences(2))}</description><pubDate>{pick(['Mon, 03 Jun 2024 09:00:00 +0000', 'Fri, 14 Jun 2024 16:30:00 +0200'])}</pubDate>"
                            f"<guid isPermaLink=\"false\">{new_uuid()}</guid><category>{pick(['Product', 'Engineering', 'Company news'])}</category></item>"
                            for _ in range(R.randint(2, 6)))
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">\n<channel>\n'
                    f'<title>{xesc(pick(COMPANIES))} blog</title><link>https://blog.example.com/</link><description>News &amp; updates</description>'
                    f'<language>{pick(["en-us", "fr-fr", "de-de"])}</language>{items}\n</channel>\n</rss>\n')
            ct = pick(["application/xml", "text/xml; charset=UTF-8", "application/xml; charset=utf-8"])
            path = pick([f"/v1/feeds/{obj_id('feed', 8)}/import", "/api/feeds/ingest"])
        elif kind == "atom":
            entries = "".join(f"<entry><title>{xesc(pick(TITLES))}</title><id>urn:uuid:{new_uuid()}</id><updated>{iso()}</updated>"
                              f"<author><name>{xesc(person()[2])}</name></author><summary>{xesc(pick(SENTENCES))}</summary></entry>"
                              for _ in range(R.randint(1, 4)))
            body = ('<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
                    f'<title>{xesc(pick(COMPANIES))} changelog</title><id>urn:uuid:{new_uuid()}</id><updated>{iso()}</updated>{entries}</feed>')
            ct = "application/xml"
            path = "/api/feeds/ingest"
        elif kind == "plain_invoice":
            first, last, name = person()
            lines = "".join(f'<line no="{k + 1}"><description>{xesc(pick(PRODUCTS))}</description><qty>{R.randint(1, 10)}</qty>'
                            f'<amount currency="{pick(CURRENCIES).upper()}">{R.randint(1, 999)}.{R.randint(0, 99):02d}</amount></line>'
                            for k in range(R.randint(1, 5)))
            body = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                    f'<invoice number="INV-{R.randint(1000, 9999)}" issued="{day()}">\n  <buyer><name>{xesc(name)}</name>'
                    f'<company>{xesc(pick(COMPANIES))}</company><email>{email_for(first, last)}</email></buyer>\n  <lines>{lines}</lines>\n'
                    f'  <notes>{xesc(pick(SENTENCES))}</notes>\n  <paid>{pick(["true", "false"])}</paid>\n</invoice>\n')
            ct = pick(["application/xml", "text/xml"])
            path = pick(["/api/v1/invoices/import", "/edi/invoices"])
        else:
            urls = "".join(f"<url><loc>https://www.example.com/{pick(['products', 'blog', 'docs'])}/{alnum(8, 'abcdefghijklmnopqrstuvwxyz')}</loc>"
                           f"<lastmod>{day()}</lastmod><changefreq>{pick(['daily', 'weekly', 'monthly'])}</changefreq><priority>0.{R.randint(1, 9)}</priority></url>"
                           for _ in range(R.randint(3, 12)))
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">' + urls + "</urlset>\n")
            ct = "application/xml"
            path = "/api/v1/sitemaps"
        add("xml", kind, "POST", path, base_headers(accept=pick(["application/xml", "text/xml", "*/*", "application/json"]), extra=extra), body, ct)


# ---------------------------------------------------------------------------------------------


def main():
    gen_crud(200)
    gen_query(190)
    gen_json(190)
    gen_form(165)
    gen_multipart(160)
    gen_graphql(170)
    gen_webhook(150)
    gen_xml(42)
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        for rec in REQUESTS:
            f.write(json.dumps(rec, ensure_ascii=False, separators=(", ", ": ")) + "\n")
    print(f"{len(REQUESTS)} requests -> {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
