"""Presigns GetObject URLs with botocore (Debian's python3-botocore), the way
boto3 users and the aws CLI do, or (with --signatures) recomputes with
botocore's S3 query signer the signature a given URL should carry. Reads one
JSON array of cases on stdin and writes one JSON array on stdout."""
import json
import sys
from urllib.parse import parse_qsl, quote, urlsplit

import botocore.session
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

AUTH_PARAMS = {'X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires',
               'X-Amz-SignedHeaders', 'X-Amz-Signature', 'X-Amz-Security-Token'}


def botocore_signature(case):
    """The signature botocore computes for the URL's request at the URL's own X-Amz-Date."""
    parts = urlsplit(case['url'])
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    rest = '&'.join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in params.items() if k not in AUTH_PARAMS)
    request = AWSRequest(method='GET', url=f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else ''))
    credentials = Credentials(case['accessKeyId'], case['secretAccessKey'], case.get('sessionToken'))
    signer = S3SigV4QueryAuth(credentials, 's3', case['region'], expires=int(params['X-Amz-Expires']))
    # add_auth() with the URL's timestamp instead of the clock: the same steps, in order.
    request.context['timestamp'] = params['X-Amz-Date']
    signer._modify_request_before_signing(request)
    canonical_request = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical_request), request)


if sys.argv[1:] == ['--signatures']:
    json.dump([botocore_signature(case) for case in json.load(sys.stdin)], sys.stdout)
    sys.exit(0)

PARAMS = {
    'filenameDisposition': 'ResponseContentDisposition',
    'contentType': 'ResponseContentType',
    'cacheControl': 'ResponseCacheControl',
    'contentLanguage': 'ResponseContentLanguage',
    'contentEncoding': 'ResponseContentEncoding',
    'versionId': 'VersionId',
    'partNumber': 'PartNumber',
    'checksumMode': 'ChecksumMode',
}

session = botocore.session.get_session()
clients = {}


def client_for(case):
    key = (case['endpoint'], case['region'], case['accessKeyId'], case['secretAccessKey'], case.get('sessionToken'), case['addressingStyle'])
    if key not in clients:
        clients[key] = session.create_client(
            's3',
            region_name=case['region'],
            endpoint_url=case['endpoint'],
            aws_access_key_id=case['accessKeyId'],
            aws_secret_access_key=case['secretAccessKey'],
            aws_session_token=case.get('sessionToken'),
            config=Config(signature_version='s3v4', s3={'addressing_style': case['addressingStyle']}),
        )
    return clients[key]


urls = []
for case in json.load(sys.stdin):
    params = {'Bucket': case['bucket'], 'Key': case['key']}
    for name, value in case.get('params', {}).items():
        params[PARAMS[name]] = value
    urls.append(client_for(case).generate_presigned_url('get_object', Params=params, ExpiresIn=case['expiresIn']))
json.dump(urls, sys.stdout)
