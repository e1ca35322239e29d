#!/usr/bin/env python3
"""Signs test requests with Huawei's official Python SDK signer (huaweicloudsdkcore).

Reads a JSON array of cases on stdin and writes a JSON array of results on stdout, one per case:
{"canonical_request": ..., "string_to_sign": ..., "signature": ..., "authorization": ...}.

Each case: {"method", "host", "path", "query": [[k, v], ...], "headers": [[name, value], ...],
"body_b64", "ak", "sk"}. The headers include X-Sdk-Date so the result is deterministic.

The canonical request is rebuilt from the Signer's own steps (the public sign() does not return
it); the script then checks that the public sign() produces the same Authorization header, so the
steps cannot drift from what the SDK really does.

Exit code 3 means huaweicloudsdkcore is not installed: pip install huaweicloudsdkcore
"""
import base64
import copy
import json
import sys
import types

try:
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer
except ImportError as exc:  # pragma: no cover - the Rust test reports it
    sys.stderr.write("huaweicloudsdkcore is not installed (%s): pip install huaweicloudsdkcore\n" % exc)
    sys.exit(3)


def sign_case(case):
    body = base64.b64decode(case["body_b64"])
    headers = {}
    for name, value in case["headers"]:
        headers[name] = value
    request = SdkRequest(
        method=case["method"],
        schema="https",
        host=case["host"],
        resource_path=case["path"],
        query_params=[(k, v) for k, v in case["query"]],
        header_params=headers,
        body=body,
    )
    public = copy.deepcopy(request)
    credentials = types.SimpleNamespace(ak=case["ak"], sk=case["sk"])
    signer = Signer(credentials)

    # The steps of Signer.sign, in its order.
    if isinstance(request.body, str):
        request.body = request.body.encode("utf-8")
    signer._process_content_header(request)
    t = signer._process_header_time(request)
    signer._process_header_host(request)
    signed_headers = signer._process_signed_headers(request)
    canonical_request = signer._process_canonical_request(request, signed_headers)
    string_to_sign = signer._process_string_to_sign(canonical_request, t)
    signature = signer._sign_string_to_sign(string_to_sign, case["sk"])
    authorization = signer._process_auth_header_value(signature, case["ak"], signed_headers)

    Signer(credentials).sign(public)
    if public.header_params["Authorization"] != authorization:
        raise SystemExit("replicated steps disagree with Signer.sign: %r vs %r"
                         % (authorization, public.header_params["Authorization"]))
    return {
        "canonical_request": canonical_request,
        "string_to_sign": string_to_sign,
        "signature": signature,
        "authorization": authorization,
    }


def main():
    cases = json.load(sys.stdin)
    json.dump([sign_case(c) for c in cases], sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
