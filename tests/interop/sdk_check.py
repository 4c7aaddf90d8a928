"""Drives the official OpenAI and Anthropic Python SDKs against sse-edge.

Usage: sdk_check.py SCENARIO BASE_URL

Prints one JSON line describing what the SDK produced (text, events, usage)
or which exception it raised. tests/sdk_interop.rs runs it and checks the
line; nothing here asserts on its own, so the Rust test owns the verdict.
"""

import importlib
import json
import sys


def openai_client(base):
    import openai

    return openai.OpenAI(base_url=base + "/v1", api_key="test", timeout=30, max_retries=0)


def anthropic_client(base):
    import anthropic

    return anthropic.Anthropic(base_url=base, api_key="test", timeout=30, max_retries=0)


def openai_chat(base, **extra):
    stream = openai_client(base).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True, **extra
    )
    text, chunks, finish, usage, models = "", 0, None, None, set()
    for chunk in stream:
        chunks += 1
        models.add(chunk.model)
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        if chunk.usage is not None:
            usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens]
    return {"text": text, "chunks": chunks, "finish": finish, "usage": usage, "models": sorted(models)}


def openai_chat_usage(base):
    """openai_chat asking for usage (stream_options.include_usage)."""
    return openai_chat(base, stream_options={"include_usage": True})


def openai_responses(base):
    stream = openai_client(base).responses.create(model="gpt-test", input="hi", stream=True)
    text, types, usage = "", [], None
    for event in stream:
        types.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed" and event.response.usage is not None:
            usage = [event.response.usage.input_tokens, event.response.usage.output_tokens]
    return {"text": text, "types": types, "usage": usage}


def anthropic_messages(base):
    client = anthropic_client(base)
    with client.messages.stream(
        model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return {
        "text": text,
        "final_text": "".join(b.text for b in final.content if b.type == "text"),
        "blocks": [b.type for b in final.content],
        "stop_reason": final.stop_reason,
        "input_tokens": final.usage.input_tokens,
        "output_tokens": final.usage.output_tokens,
    }


def openai_chat_resume(base):
    """Reads two chunks, drops the connection, and resumes with the stream id
    from the response headers and the number of chunks read (each chunk is
    one event, so that count is the last event's seq)."""
    client = openai_client(base)
    args = dict(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True)
    raw = client.chat.completions.with_raw_response.create(**args)
    stream_id = raw.headers.get("sse-edge-stream-id")
    stream = raw.parse()
    text, chunks = "", 0
    for chunk in stream:
        chunks += 1
        for choice in chunk.choices:
            text += choice.delta.content or ""
        if chunks == 2:
            break
    stream.close()
    headers = {"Last-Event-ID": f"{stream_id}:{chunks}"}
    resumed = client.chat.completions.create(**args, extra_headers=headers)
    for chunk in resumed:
        chunks += 1
        for choice in chunk.choices:
            text += choice.delta.content or ""
    return {"text": text, "chunks": chunks, "stream_id": stream_id}


SCENARIOS = {
    "openai_chat_resume": openai_chat_resume,
    "openai_chat": openai_chat,
    "openai_chat_usage": openai_chat_usage,
    "openai_responses": openai_responses,
    "anthropic_messages": anthropic_messages,
}


def main():
    scenario, base = sys.argv[1], sys.argv[2]
    # Only the SDK the scenario drives is imported (each takes a second or
    # two to import).
    sdk = importlib.import_module(scenario.split("_")[0])
    try:
        result = {"ok": SCENARIOS[scenario](base)}
    except sdk.APIError as e:
        result = {"raised": type(e).__name__, "message": str(e)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
