"""weather_agent: current weather and short forecasts for ~35 world cities, offline.

The numbers are a pseudo-forecast derived from the city and the day offset (a
stable hash around each city's typical temperature), so the same question always
gets the same answer and the demo needs no weather API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from examples.agents.common import WEEKDAYS, Agent, Chat, find_date, find_names, main, stable_int, today


@dataclass(frozen=True)
class City:
    name: str
    country: str
    mean_c: int      # typical daytime temperature of the demo climate
    wet: float       # 0 (desert) .. 1 (rainy): base chance of rain
    aliases: tuple[str, ...] = ()


CITIES = [
    City("Paris", "France", 16, 0.45), City("London", "United Kingdom", 14, 0.55),
    City("New York", "United States", 17, 0.40, ("new york city", "nyc", "manhattan")),
    City("Tokyo", "Japan", 19, 0.45), City("Seattle", "United States", 13, 0.65),
    City("San Francisco", "United States", 16, 0.30, ("SF", "san fran")),
    City("Los Angeles", "United States", 23, 0.10, ("LA",)), City("Chicago", "United States", 13, 0.40),
    City("Boston", "United States", 14, 0.45), City("Miami", "United States", 29, 0.55),
    City("Toronto", "Canada", 11, 0.40), City("Vancouver", "Canada", 12, 0.60),
    City("Mexico City", "Mexico", 22, 0.35), City("São Paulo", "Brazil", 24, 0.50, ("sao paulo",)),
    City("Buenos Aires", "Argentina", 20, 0.35), City("Berlin", "Germany", 14, 0.40),
    City("Madrid", "Spain", 20, 0.20), City("Rome", "Italy", 21, 0.30), City("Amsterdam", "Netherlands", 13, 0.55),
    City("Lisbon", "Portugal", 21, 0.25), City("Dublin", "Ireland", 12, 0.60), City("Oslo", "Norway", 8, 0.45),
    City("Stockholm", "Sweden", 9, 0.40), City("Istanbul", "Turkey", 18, 0.35), City("Cairo", "Egypt", 29, 0.03),
    City("Nairobi", "Kenya", 24, 0.35), City("Cape Town", "South Africa", 20, 0.30),
    City("Dubai", "United Arab Emirates", 34, 0.02), City("Mumbai", "India", 31, 0.50),
    City("Delhi", "India", 30, 0.25, ("new delhi",)), City("Singapore", "Singapore", 31, 0.60),
    City("Hong Kong", "China", 27, 0.50), City("Beijing", "China", 17, 0.25), City("Seoul", "South Korea", 16, 0.40),
    City("Bangkok", "Thailand", 33, 0.45), City("Sydney", "Australia", 22, 0.35),
]
CITY_NAMES = {alias: c.name for c in CITIES for alias in (c.name.lower(), *c.aliases)}
BY_NAME = {c.name: c for c in CITIES}

WEATHER_WORDS = re.compile(
    r"\b(weather|forecast|temperature|temp|degrees|rain\w*|snow\w*|sun\w*|wind\w*|storm\w*|cloud\w*|"
    r"hot|cold|warm|cool|humid\w*|umbrella|jacket|chilly|freezing)\b", re.I)
OTHER_WORDS = re.compile(r"\b(flight|flights|fly|flying|book|ticket|tickets|hotel|convert|exchange|currency|"
                         r"price|prices|fare|fares)\b", re.I)
NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "a couple of": 2, "few": 3}


def c_to_f(c: int) -> int:
    return round(c * 9 / 5 + 32)


def day_weather(city: City, offset: int) -> dict:
    """The demo forecast for ``offset`` days from today (same inputs, same weather)."""
    h = stable_int("weather", city.name, offset)
    high = city.mean_c + (h % 9) - 4
    low = high - 5 - (h >> 8) % 5
    rain = max(0, min(95, round(city.wet * 100) + (h >> 16) % 41 - 20))
    if rain >= 60:
        sky = "snow" if high <= 1 else ("thunderstorms" if (h >> 24) % 3 == 0 and high > 18 else "rain")
    elif rain >= 40:
        sky = "snow showers" if high <= 1 else "light showers"
    elif rain >= 25:
        sky = "cloudy"
    elif rain >= 12:
        sky = "partly cloudy"
    else:
        sky = "sunny"
    return {"high": high, "low": low, "rain": rain, "sky": sky,
            "wind": 5 + (h >> 32) % 26, "humidity": min(98, 30 + rain // 2 + (h >> 40) % 20)}


def describe_day(city: City, offset: int, day: date) -> str:
    w = day_weather(city, offset)
    named = {0: "Today", 1: "Tomorrow"}
    label = f"{named[offset]} ({day:%a} {day.day} {day:%b})" if offset in named else f"{day:%A} {day.day} {day:%b}"
    return (f"{label}: {w['sky']}, "
            f"high {w['high']}°C ({c_to_f(w['high'])}°F), low {w['low']}°C ({c_to_f(w['low'])}°F), "
            f"{w['rain']}% chance of rain, wind {w['wind']} km/h")


def describe_now(city: City) -> str:
    w = day_weather(city, 0)
    now = round(w["low"] + 0.7 * (w["high"] - w["low"]))
    return (f"Right now in {city.name}, {city.country}: {now}°C ({c_to_f(now)}°F), {w['sky']}, "
            f"humidity {w['humidity']}%, wind {w['wind']} km/h.")


def wanted_days(text: str, base: date) -> list[int] | None:
    """Day offsets the question asks about, or None when it names no day."""
    t = text.lower()
    count = r"(\d+|two|three|four|five|six|seven|a couple of|few)"
    if m := re.search(rf"\b(?:next|coming|following)\s+{count}\s+days\b", t) or re.search(r"\b(\d+)[- ]day\b", t):
        n = int(m[1]) if m[1].isdigit() else NUMBERS[m[1]]
        return list(range(max(1, min(n, 7))))
    if re.search(r"\b(few|coming) days\b", t):
        return [0, 1, 2]
    if "weekend" in t:
        saturday = (5 - base.weekday()) % 7
        return [0] if base.weekday() == 6 else [saturday, saturday + 1]
    if re.search(r"\b(this|next|the) week\b|\bweekly\b|\b7 days\b", t):
        return list(range(7))
    if re.search(r"\b(the )?day after( tomorrow)?\b", t):
        return [2]
    days = set()
    if re.search(r"\btomorrow\b", t):
        days.add(1)
    if re.search(r"\b(today|tonight|now|currently|right now)\b", t):
        days.add(0)
    if not days and (found := find_date(t, base)) is not None and 0 <= (found - base).days <= 13:
        days.add((found - base).days)
    if days:
        return sorted(days)
    return [0, 1, 2] if "forecast" in t else None


def weather_part(text: str) -> str:
    """Drop clauses that are about something else ("...and book me a flight")."""
    clauses = re.split(r"[,;.?!]|\band\b|\balso\b|\bthen\b", text)
    keep = [c for c in clauses if WEATHER_WORDS.search(c) or not OTHER_WORDS.search(c)]
    return " , ".join(c.strip() for c in keep if c.strip())


def pick_city(text: str) -> str | None:
    """The city a text is about: a destination ("to Paris") wins, else the last one named."""
    mentions = find_names(text, CITY_NAMES)
    for start, _, name in mentions:
        if re.search(r"\b(to|into|in|at|for)\s*$", text[:start], re.I):
            return name
    return mentions[-1][2] if mentions else None


def unknown_place(text: str) -> str | None:
    m = re.search(r"\b(?:in|for|at)\s+([A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)?)", text)
    return m[1] if m and m[1].lower() not in CITY_NAMES and m[1].lower() not in WEEKDAYS else None


class WeatherAgent(Agent):
    id = "weather_agent"
    description = ("a weather service: current conditions and multi-day forecasts for world cities "
                   "(temperature, rain, wind, humidity)")
    default_port = 10510

    def answer(self, chat: Chat) -> str:
        base = today()
        part = weather_part(chat.question) or chat.question
        names = list(dict.fromkeys(n for _, _, n in find_names(part, CITY_NAMES)))
        note = ""
        if not names and (name := pick_city(chat.question)):  # "...flight to Paris, weather there?"
            names = [name]
        if not names:
            for text in reversed(chat.earlier):
                if name := pick_city(text):
                    names, note = [name], f"(Using {name} from earlier in our conversation.)"
                    break
        if not names:
            missing = unknown_place(chat.question)
            prefix = f"Sorry, I have no weather data for {missing}. " if missing else "Which city do you mean? "
            return prefix + "I cover: " + ", ".join(sorted(BY_NAME)) + "."

        days = wanted_days(part, base) or wanted_days(chat.question, base)
        lines = [note] if note else []
        for name in names:
            city = BY_NAME[name]
            if days is None or days == [0]:
                lines.append(describe_now(city))
                lines.append(f"{city.name} — " + describe_day(city, 0, base) + ".")
            elif len(days) == 1:
                lines.append(f"{city.name}, {city.country} — "
                             + describe_day(city, days[0], base + timedelta(days=days[0])) + ".")
            else:
                lines.append(f"{len(days)}-day forecast for {city.name}, {city.country}:")
                lines += [f"- {describe_day(city, d, base + timedelta(days=d))}" for d in days]
        lines.append("(Demo data generated offline by weather_agent, not a real forecast.)")
        return "\n".join(lines)


agent = WeatherAgent()

if __name__ == "__main__":
    main(agent)
