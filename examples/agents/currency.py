"""currency_agent: exchange rates and conversions from a fixed table of 22 currencies.

The table is frozen demo data (see ``AS_OF``), not live rates, so a conversion
always gives the same number and the demo needs no market-data API.
"""

from __future__ import annotations

import re

from examples.agents.common import Agent, Chat, find_names, main

AS_OF = "2024-03-01"
# units of each currency per 1 USD (demo table, rounded, not live)
PER_USD = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 150.0, "CHF": 0.88, "CAD": 1.36, "AUD": 1.52,
    "NZD": 1.64, "CNY": 7.2, "HKD": 7.82, "SGD": 1.34, "INR": 83.0, "KRW": 1330.0, "SEK": 10.4,
    "NOK": 10.6, "DKK": 6.86, "MXN": 17.1, "BRL": 4.97, "ZAR": 18.9, "AED": 3.6725, "TRY": 31.2, "PLN": 3.98,
}
NAMES = {
    "USD": "US dollar", "EUR": "euro", "GBP": "British pound", "JPY": "Japanese yen", "CHF": "Swiss franc",
    "CAD": "Canadian dollar", "AUD": "Australian dollar", "NZD": "New Zealand dollar", "CNY": "Chinese yuan",
    "HKD": "Hong Kong dollar", "SGD": "Singapore dollar", "INR": "Indian rupee", "KRW": "South Korean won",
    "SEK": "Swedish krona", "NOK": "Norwegian krone", "DKK": "Danish krone", "MXN": "Mexican peso",
    "BRL": "Brazilian real", "ZAR": "South African rand", "AED": "UAE dirham", "TRY": "Turkish lira",
    "PLN": "Polish zloty",
}
ALIASES = {
    "dollar": "USD", "dollars": "USD", "bucks": "USD", "euro": "EUR", "euros": "EUR", "pound": "GBP",
    "pounds": "GBP", "sterling": "GBP", "quid": "GBP", "yen": "JPY", "franc": "CHF", "francs": "CHF",
    "yuan": "CNY", "renminbi": "CNY", "rmb": "CNY", "rupee": "INR", "rupees": "INR", "won": "KRW",
    "kronor": "SEK", "krona": "SEK", "kroner": "NOK", "krone": "NOK", "danish kroner": "DKK", "peso": "MXN",
    "pesos": "MXN", "reais": "BRL", "rand": "ZAR", "dirham": "AED", "dirhams": "AED", "lira": "TRY",
    "zloty": "PLN", "złoty": "PLN",
}
# full names ("canadian dollar(s)") beat the bare word ("dollar") because longer matches win
CURRENCIES = {
    **ALIASES,
    **{n.lower(): c for c, n in NAMES.items()}, **{n.lower() + "s": c for c, n in NAMES.items()},
    **{c: c for c in PER_USD},                                     # EUR, GBP ...
    **{c.lower(): c for c in PER_USD if c not in ("TRY",)},        # eur, gbp ... ("try" is a word)
}
SYMBOLS = {"$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "₩": "KRW", "₺": "TRY",
           "C$": "CAD", "A$": "AUD", "NZ$": "NZD", "HK$": "HKD", "S$": "SGD", "R$": "BRL"}
AMOUNT = re.compile(
    r"(?P<sym>US\$|NZ\$|HK\$|[CASR]\$|[$€£¥₹₩₺])?\s?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"\s?(?P<mult>k|m|thousand|million)?(?!\w)", re.I)
MULT = {"k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6}


def rate(src: str, dst: str) -> float:
    """Units of ``dst`` for one ``src``."""
    return PER_USD[dst] / PER_USD[src]


def money(value: float, code: str) -> str:
    return f"{value:,.2f} {code}"


def find_amount(text: str) -> tuple[float, str | None, int] | None:
    """(amount, currency given by a symbol, end offset) of the first amount in the text."""
    for m in AMOUNT.finditer(text):
        value = float(m["num"].replace(",", "")) * MULT.get((m["mult"] or "").lower(), 1)
        return value, SYMBOLS.get((m["sym"] or "").upper()), m.end()
    return None


class CurrencyAgent(Agent):
    id = "currency_agent"
    description = ("a currency service: exchange rates and conversions between 22 currencies from a fixed "
                   f"demo rate table as of {AS_OF}")
    default_port = 10530

    def answer(self, chat: Chat) -> str:
        text = chat.question
        mentions = find_names(text, CURRENCIES)
        codes = list(dict.fromkeys(code for _, _, code in mentions))
        amount = find_amount(text)
        if amount is not None and amount[1] is None and not codes:
            amount = None  # a bare number is not money
        footer = f"(Demo rates fixed as of {AS_OF}, not live market data.)"

        if amount is not None:
            value, src, end = amount
            if src is None:  # "100 EUR": the currency right after the number
                after = [code for start, _, code in mentions if 0 <= start - end <= 2]
                src = after[0] if after else codes[0]
            codes = codes or [src]
            targets = [c for c in codes if c != src]
            targets = targets[:1] if targets else [c for c in ("USD", "EUR", "GBP", "JPY") if c != src][:3]
            lines = [f"{money(value, src)} = {money(value * rate(src, t), t)} "
                     f"(1 {src} = {rate(src, t):,.4f} {t})" for t in targets]
            return "\n".join([*lines, footer])

        if codes:
            if len(codes) == 1:
                pairs = [(codes[0], t) for t in ("USD", "EUR", "GBP", "JPY") if t != codes[0]][:3]
            else:
                pairs = [(codes[0], t) for t in codes[1:]]
            lines = [f"Exchange rates for {NAMES[codes[0]]} ({codes[0]}):"]
            lines += [f"- 1 {a} = {rate(a, b):,.4f} {b}  (1 {b} = {rate(b, a):,.4f} {a})" for a, b in pairs]
            return "\n".join([*lines, footer])

        if re.search(r"\b(currenc|rates?|list|which|supported)", text, re.I):
            table = ", ".join(f"{c} ({NAMES[c]})" for c in PER_USD)
            return f"I know these currencies: {table}.\n{footer}"
        return ("I convert money and quote exchange rates, e.g. 'convert 100 EUR to USD' or "
                "'what is the exchange rate for GBP?'. Supported: " + ", ".join(PER_USD) + f".\n{footer}")


agent = CurrencyAgent()

if __name__ == "__main__":
    main(agent)
