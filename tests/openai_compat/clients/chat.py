"""OpenAI Python SDK client: ``chat.completions.create`` (plain and streamed) and ``models.list``.

Prints one JSON summary of the replies. Usage: python chat.py --base-url http://127.0.0.1:P/v1 --text "..."
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import openai
from openai import OpenAI


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="sk-test")
    parser.add_argument("--text", required=True)
    args = parser.parse_args()
    client = OpenAI(api_key=args.api_key, base_url=args.base_url, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": args.text}]
    models = [m.id for m in client.models.list()]
    plain = client.chat.completions.create(model="claritymentor", messages=messages)
    chunks = list(
        client.chat.completions.create(
            model="claritymentor", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    extension = (plain.model_extra or {}).get("claritymentor", {})
    try:
        client.chat.completions.create(model="gpt-unknown", messages=messages)
        unknown: Any = None
    except openai.NotFoundError as exc:
        unknown = {"status": exc.status_code, "code": exc.code, "type": exc.type}
    print(
        json.dumps(
            {
                "models": models,
                "plain": plain.choices[0].message.content,
                "finish_reason": plain.choices[0].finish_reason,
                "usage": plain.usage.model_dump() if plain.usage else None,
                "emotion": extension.get("emotion"),
                "streamed": streamed,
                "chunks": len(chunks),
                "stream_usage": chunks[-1].usage.model_dump() if chunks and chunks[-1].usage else None,
                "unknown_model": unknown,
            }
        )
    )


if __name__ == "__main__":
    main()
