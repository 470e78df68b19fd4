"""Provider authentication that depends on the request itself (unlike a fixed key header).

- :mod:`.sigv4`: AWS Signature Version 4 (Amazon Bedrock), written with hashlib/hmac.
"""
