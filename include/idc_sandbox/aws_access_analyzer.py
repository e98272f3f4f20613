"""Sandbox IAM Access Analyzer (REST-JSON, ``POST /policy/validation``, SigV4 signing name ``access-analyzer``).

``ValidatePolicy {policyDocument, policyType, locale?, validatePolicyResourceType?}`` (``maxResults`` /
``nextToken`` in the query string) -> ``{findings: [...], nextToken?}``. The policy is parsed with a
position-tracking JSON scanner, so every finding's ``locations[].span`` points into the submitted text
exactly as the real service does (``line`` 1-based, ``column`` 0-based within the line, ``offset`` 0-based
in characters, ``end`` exclusive, strings spanned with their quotes; ``path`` elements are
``{"value": key}`` / ``{"index": i}``). Verified against findings the real service returned for AWS
managed policies (e.g. AdministratorAccess: Action span 51..54, Resource 68..71 on line 1).

The checks are a realistic subset of the IAM policy validation check reference, with its issue codes:
ERROR            JSON_SYNTAX_ERROR (if ``SandboxConfig.access_analyzer_syntax_error_as_finding``; else the
                 request fails with ValidationException as the API reference says), DATA_TYPE_MISMATCH,
                 INVALID_POLICY_ELEMENT, INVALID_VERSION, MISSING_STATEMENT, MISSING_EFFECT, INVALID_EFFECT,
                 MISSING_ACTION, MISSING_RESOURCE, MISSING_PRINCIPAL (resource policies),
                 UNSUPPORTED_PRINCIPAL (identity policies), INVALID_SERVICE_IN_ACTION, INVALID_ACTION,
                 INVALID_ARN_PREFIX, INVALID_SID, INVALID_SID_UNIQUENESS
SECURITY_WARNING PASS_ROLE_WITH_STAR_IN_RESOURCE, PASS_ROLE_WITH_STAR_IN_ACTION_AND_RESOURCE,
                 PASS_ROLE_WITH_NOT_ACTION_AND_STAR_IN_RESOURCE (name unverified)
WARNING          MISSING_VERSION, CREATE_SLR_WITH_STAR_IN_RESOURCE, CREATE_SLR_WITH_STAR_IN_ACTION_AND_RESOURCE
SUGGESTION       EMPTY_ARRAY_ACTION, EMPTY_ARRAY_RESOURCE, EMPTY_SID_VALUE, REDUNDANT_ACTION,
                 REDUNDANT_RESOURCE, REDUNDANT_STATEMENT
Service prefixes come from the actions used in AWS managed policies (moto's catalog, frozen below);
actions are checked only for a few services whose IAM actions equal their API operations (botocore).
``findingDetails`` are English whatever ``locale`` asks (the real service localises them).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import dataclasses as dc
import difflib
import fnmatch
import functools
import json
import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from idc_sandbox.core import Sandbox, ServiceError, aws_fault_guard

SERVICE = "accessanalyzer"
OPERATION = "ValidatePolicy"
# fault kind -> (error code, HTTP status, default message); statuses from the botocore model
ERRORS: dict[str, tuple[str, int, str]] = {
    "throttle": ("ThrottlingException", 429, "Rate exceeded"),
    "conflict": ("ConflictException", 409, "There is a conflicting operation in process."),
    "error5xx": ("InternalServerException", 500, "Internal server error"),
    "access_denied": (
        "AccessDeniedException",
        403,
        "You do not have sufficient access to perform this action.",
    ),
    "outage": ("ServiceUnavailableException", 503, "Service is unavailable (injected outage)."),
}
RETRY_AFTER_SECONDS = 1
POLICY_TYPES = ("IDENTITY_POLICY", "RESOURCE_POLICY", "SERVICE_CONTROL_POLICY", "RESOURCE_CONTROL_POLICY")
LOCALES = ("DE", "EN", "ES", "FR", "IT", "JA", "KO", "PT_BR", "ZH_CN", "ZH_TW")
RESOURCE_TYPES = (
    "AWS::S3::Bucket",
    "AWS::S3::AccessPoint",
    "AWS::S3::MultiRegionAccessPoint",
    "AWS::S3ObjectLambda::AccessPoint",
    "AWS::IAM::AssumeRolePolicyDocument",
    "AWS::DynamoDB::Table",
)
VALID_VERSIONS = ("2012-10-17", "2008-10-17")
LEARN_MORE = "https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html"
_TYPE_SLUG = {
    "ERROR": "error",
    "SECURITY_WARNING": "security-warning",
    "WARNING": "general-warning",
    "SUGGESTION": "suggestion",
}

# IAM service prefixes used by AWS managed policies (moto 5.2 catalog), lower case.
SERVICE_PREFIXES: frozenset[str] = frozenset(
    """
a2c a4b access-analyzer account account-access acm acm-pca aco-automation action-recommendations
agent-registry aidevops aiops airflow airflow-serverless amplify amplifybackend amplifyuibuilder
aoss apigateway app-integrations appconfig appfabric appflow application-autoscaling
application-signals application-transformation applicationinsights appmesh appmesh-preview apprunner
appstream appstudio appsync apptest aps arc-region-switch arc-zonal-shift arsenal artifact assurance
athena auditmanager autoscaling autoscaling-plans aws-external-anthropic aws-marketplace
aws-marketplace-management aws-portal awsconnector b2bi backup backup-gateway backup-search
backup-storage batch bcm-dashboards bcm-data-exports bcm-pricing-calculator bcm-recommended-actions
bedrock bedrock-agentcore bedrock-mantle bedrock-websearch billing billingconductor braket budgets
bugbust builderid cases cassandra ce chatbot chime cleanrooms cleanrooms-ml cloud9 clouddirectory
cloudformation cloudfront cloudfront-keyvaluestore cloudhsm cloudsearch cloudshell cloudtrail
cloudwatch codeartifact codebuild codecatalyst codecommit codeconnections codedeploy codeguru
codeguru-profiler codeguru-reviewer codeguru-security codepipeline codestar codestar-connections
codestar-notifications codewhisperer cognito-identity cognito-idp cognito-sync comprehend
comprehendmedical compute-optimizer config connect connect-campaigns consoleapp consolidatedbilling
controlcatalog controltower cost-optimization-hub cur customer-verification databrew dataexchange
datapipeline datasync datazone dax dbqms deadline deepcomposer deeplens deepracer detective
devicefarm devops-guru directconnect discovery dlm dms docdb-elastic drs ds ds-data dsql dynamodb
ebs ec2 ec2-instance-connect ec2messages ecr ecr-public ecs eks eks-auth eks-mcp elastic-inference
elasticache elasticbeanstalk elasticfilesystem elasticloadbalancing elasticmapreduce
elastictranscoder elemental-activations elemental-appliances-software elemental-inference
elemental-support-cases elemental-support-content emr-containers emr-serverless entityresolution es
events eventsbilltoaws evidently evs execute-api finops-agent finspace firehose fis fms forecast
frauddetector freertos freetier fsx gamelift gameliftstreams geo geo-maps geo-places geo-routes
glacier globalaccelerator glue grafana greengrass groundstation groundtruthlabeling guardduty health
healthlake honeycode iam identity-sync identitystore identitystore-auth imagebuilder importexport
inspector inspector-scan inspector2 inspector2-telemetry interconnect internetmonitor invoicing iot
iot-device-tester iot1click iotanalytics iotdeviceadvisor iotevents iotfleethub iotfleetwise
iotjobsdata iotmanagedintegrations iotsitewise iottwinmaker iotwireless iq iq-permission ivs ivschat
kafka kafka-cluster kafkaconnect kendra kendra-ranking kinesis kinesisanalytics kinesisvideo kms
lakeformation lambda launchwizard lex license-manager license-manager-linux-subscriptions
license-manager-user-subscriptions lightsail logs lookoutequipment lookoutmetrics lookoutvision m2
machinelearning macie2 managedblockchain mapcredits mechanicalturk mediaconnect mediaconvert
medialive mediapackage mediapackage-vod mediapackagev2 mediastore mediatailor medical-imaging
memorydb mgh mgn migrationhub-orchestrator migrationhub-strategy mobileanalytics mobiletargeting
monitron mpa mq neptune-db neptune-graph network-firewall networkflowmonitor networkmanager
networkmonitor nimble notifications notifications-contacts nova-act oam observabilityadmin odb omics
one opensearch opsworks opsworks-cm organizations osis outposts panorama partnercentral
partnercentral-account-management payment-cryptography payments pca-connector-ad pca-connector-scep
pcs personalize pi pipes polly pricing pricingplanmanager private-networks profile proton
purchase-orders q qapps qbusiness qldb quicksight ram rbin rds rds-data rds-db redshift
redshift-data redshift-serverless refactor-spaces rekognition researchstudio resiliencehub
resource-explorer-2 resource-groups robomaker rolesanywhere route53 route53-recovery-cluster
route53-recovery-control-config route53-recovery-readiness route53domains route53globalresolver
route53profiles route53resolver rtbfabric rum s3 s3-object-lambda s3-outposts s3express s3files
s3tables s3vectors sagemaker sagemaker-data-science-assistant sagemaker-geospatial sagemaker-mlflow
sagemaker-unified-studio-mcp savingsplans scheduler schemas scn sdb secretsmanager security-ir
securityagent securityhub securitylake serverlessrepo servicecatalog servicediscovery servicequotas
ses shield signer signin simspaceweaver sms sms-voice snowball sns social-messaging sqlworkbench sqs
ssm ssm-contacts ssm-guiconnect ssm-incidents ssm-quicksetup ssm-sap ssmmessages sso sso-directory
states storagegateway sts support support-console supportapp supportplans sustainability swf
synthetics tag tax textract thinclient timestream timestream-influxdb tiros tnb transcribe transfer
transform transform-custom translate trustedadvisor user-subscriptions uxc vendor-insights
verifiedpermissions voiceid vpc-lattice vpc-lattice-svcs waf waf-regional wafv2 wam wellarchitected
wickr wisdom workdocs worklink workmail workmailmessageflow workspaces workspaces-instances
workspaces-web xray zocalo
""".split()  # noqa: SIM905
)
# services whose IAM actions are checked one by one: boto3 service name (for the model) -> IAM-only actions
_CHECKED_SERVICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "iam": ("iam", ("PassRole",)),
    "sts": ("sts", ("TagSession", "SetSourceIdentity", "SetContext")),
    "organizations": ("organizations", ()),
    "identitystore": ("identitystore", ()),
    "access-analyzer": ("accessanalyzer", ()),
}


@functools.cache
def known_actions(prefix: str) -> dict[str, str] | None:
    """Lower-cased action -> canonical name for a checked service prefix; None when actions are not checked."""
    spec = _CHECKED_SERVICES.get(prefix)
    if spec is None:
        return None
    try:
        import botocore.session

        model = botocore.session.get_session().get_service_model(spec[0])
        names = list(model.operation_names) + list(spec[1])
    except Exception:  # botocore missing or model not found: do not invent INVALID_ACTION findings
        return None
    return {n.lower(): n for n in names}


# --------------------------------------------------------------------------- position-tracking JSON
class PolicySyntaxError(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dc.dataclass
class Node:
    kind: str  # object | array | string | number | true | false | null
    start: int
    end: int  # exclusive
    value: Any = None  # python value of scalars
    items: list[Node] = dc.field(default_factory=list)
    members: list[tuple[str, Node, Node]] = dc.field(default_factory=list)  # (key, key node, value node)

    def get(self, key: str) -> Node | None:
        for k, _, v in self.members:
            if k == key:
                return v
        return None

    def plain(self) -> Any:
        if self.kind == "object":
            return {k: v.plain() for k, _, v in self.members}
        if self.kind == "array":
            return [i.plain() for i in self.items]
        return self.value


# the stdlib JSON string scanner (escapes, control characters) with its error positions
_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_WS = " \t\n\r"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def parse(self) -> Node:
        self.ws()
        node = self.value()
        self.ws()
        if self.pos != len(self.text):
            raise PolicySyntaxError("Unexpected content after the JSON value", self.pos)
        return node

    def value(self) -> Node:
        t, i = self.text, self.pos
        if i >= len(t):
            raise PolicySyntaxError("Unexpected end of input", i)
        c = t[i]
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if c == '"':
            return self.string()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if t.startswith(word, i):
                self.pos = i + len(word)
                return Node(word, i, self.pos, val)
        m = _NUMBER.match(t, i)
        if m and m.end() > i:
            self.pos = m.end()
            raw = m.group()
            return Node("number", i, self.pos, float(raw) if any(ch in raw for ch in ".eE") else int(raw))
        raise PolicySyntaxError(f"Unexpected character {c!r}", i)

    def string(self) -> Node:
        start = self.pos
        try:
            val, end = _scanstring(self.text, start + 1, True)
        except json.JSONDecodeError as exc:
            raise PolicySyntaxError(exc.msg, exc.pos) from None
        self.pos = end
        return Node("string", start, end, val)

    def obj(self) -> Node:
        start = self.pos
        self.pos += 1
        node = Node("object", start, start)
        self.ws()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            node.end = self.pos
            return node
        while True:
            self.ws()
            if not self.text.startswith('"', self.pos):
                raise PolicySyntaxError("Expected a string key", self.pos)
            key = self.string()
            self.ws()
            if not self.text.startswith(":", self.pos):
                raise PolicySyntaxError("Expected ':'", self.pos)
            self.pos += 1
            self.ws()
            val = self.value()
            node.members.append((key.value, key, val))
            self.ws()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("}", self.pos):
                self.pos += 1
                node.end = self.pos
                return node
            raise PolicySyntaxError("Expected ',' or '}'", self.pos)

    def arr(self) -> Node:
        start = self.pos
        self.pos += 1
        node = Node("array", start, start)
        self.ws()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            node.end = self.pos
            return node
        while True:
            self.ws()
            node.items.append(self.value())
            self.ws()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("]", self.pos):
                self.pos += 1
                node.end = self.pos
                return node
            raise PolicySyntaxError("Expected ',' or ']'", self.pos)


def parse_policy(text: str) -> Node:
    """The policy as a :class:`Node` tree with character offsets; PolicySyntaxError if it is not JSON."""
    return _Parser(text).parse()


# --------------------------------------------------------------------------- findings
class _Findings:
    def __init__(self, text: str) -> None:
        self.items: list[dict[str, Any]] = []
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def position(self, offset: int) -> dict[str, int]:
        line = bisect.bisect_right(self._line_starts, offset)
        return {"line": line, "column": offset - self._line_starts[line - 1], "offset": offset}

    def location(self, path: list[dict[str, Any]], start: int, end: int) -> dict[str, Any]:
        return {"path": list(path), "span": {"start": self.position(start), "end": self.position(end)}}

    def add(
        self, finding_type: str, code: str, details: str, locations: list[tuple[list[dict[str, Any]], Node]]
    ) -> None:
        slug = f"{_TYPE_SLUG[finding_type]}-{code.lower().replace('_', '-')}"
        self.items.append(
            {
                "findingType": finding_type,
                "issueCode": code,
                "findingDetails": details,
                "learnMoreLink": f"{LEARN_MORE}#access-analyzer-reference-policy-checks-{slug}",
                "locations": [self.location(path, node.start, node.end) for path, node in locations],
            }
        )


Path = list[dict[str, Any]]
_STATEMENT_KEYS = (
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
)
_SID = re.compile(r"^[A-Za-z0-9]*$")


def _strings(f: _Findings, node: Node, path: Path) -> list[tuple[str, Node, Path]] | None:
    """A string-or-list-of-strings element as (value, node, path); DATA_TYPE_MISMATCH otherwise."""
    if node.kind == "string":
        return [(node.value, node, path)]
    if node.kind == "array":
        out = []
        for i, item in enumerate(node.items):
            if item.kind != "string":
                f.add(
                    "ERROR",
                    "DATA_TYPE_MISMATCH",
                    "The text does not match the expected JSON data type String.",
                    [([*path, {"index": i}], item)],
                )
                continue
            out.append((item.value, item, [*path, {"index": i}]))
        return out
    f.add(
        "ERROR",
        "DATA_TYPE_MISMATCH",
        "The text does not match the expected JSON data type Array or String.",
        [(path, node)],
    )
    return None


def _matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def _condition_keys(node: Node | None) -> set[str]:
    keys: set[str] = set()
    if node is not None and node.kind == "object":
        for _, _, block in node.members:
            if block.kind == "object":
                keys.update(k.lower() for k, _, _ in block.members)
    return keys


def _check_action(f: _Findings, action: str, node: Node, path: Path) -> None:
    if action == "*":
        return
    prefix, sep, name = action.partition(":")
    if not sep or not name:
        f.add("ERROR", "INVALID_ACTION", f"The action {action} does not exist.", [(path, node)])
        return
    if prefix.lower() not in SERVICE_PREFIXES:
        f.add(
            "ERROR",
            "INVALID_SERVICE_IN_ACTION",
            f"The service {action} specified in the action does not exist.",
            [(path, node)],
        )
        return
    catalog = known_actions(prefix.lower())
    if catalog is None:
        return
    if any(ch in name for ch in "*?"):
        if not any(_matches(name, known) for known in catalog):
            f.add("ERROR", "INVALID_ACTION", f"The action {action} does not exist.", [(path, node)])
        return
    if name.lower() not in catalog:
        close = difflib.get_close_matches(name, list(catalog.values()), n=1, cutoff=0.75)
        hint = f" Did you mean {prefix}:{close[0]}?" if close else ""
        f.add("ERROR", "INVALID_ACTION", f"The action {action} does not exist.{hint}", [(path, node)])


def _redundant(
    values: list[tuple[str, Node, Path]], covers: Any
) -> list[tuple[tuple[str, Node, Path], tuple[str, Node, Path]]]:
    """Pairs (kept, redundant): a later duplicate, or an entry covered by another entry's wildcard."""
    pairs = []
    taken: set[int] = set()
    for j, item in enumerate(values):
        for i, other in enumerate(values):
            if i == j or i in taken:
                continue
            same = other[0].lower() == item[0].lower()
            if (same and i < j) or (not same and covers(other[0], item[0])):
                pairs.append((other, item))
                taken.add(j)
                break
    return pairs


def _action_covers(pattern: str, action: str) -> bool:
    if pattern == "*":
        return True
    return ("*" in pattern or "?" in pattern) and _matches(pattern, action)


def _resource_covers(pattern: str, resource: str) -> bool:
    return ("*" in pattern or "?" in pattern) and fnmatch.fnmatchcase(resource, pattern)


def _check_statement(f: _Findings, st: Node, path: Path, policy_type: str) -> None:
    if st.kind != "object":
        f.add(
            "ERROR",
            "DATA_TYPE_MISMATCH",
            "The text does not match the expected JSON data type Object.",
            [(path, st)],
        )
        return
    for key, key_node, _ in st.members:
        if key not in _STATEMENT_KEYS:
            f.add(
                "ERROR",
                "INVALID_POLICY_ELEMENT",
                f"The policy element {key} is not valid.",
                [([*path, {"value": key}], key_node)],
            )
    sid = st.get("Sid")
    if sid is not None:
        if sid.kind != "string":
            f.add(
                "ERROR",
                "DATA_TYPE_MISMATCH",
                "The text does not match the expected JSON data type String.",
                [([*path, {"value": "Sid"}], sid)],
            )
        elif sid.value == "":
            f.add(
                "SUGGESTION",
                "EMPTY_SID_VALUE",
                "Add a value to the empty string in the Sid element.",
                [([*path, {"value": "Sid"}], sid)],
            )
        elif policy_type == "IDENTITY_POLICY" and not _SID.match(sid.value):
            f.add(
                "ERROR",
                "INVALID_SID",
                f"The Sid {sid.value} is not valid. Use only alphanumeric characters (A-Z, a-z, 0-9).",
                [([*path, {"value": "Sid"}], sid)],
            )

    effect = st.get("Effect")
    if effect is None:
        f.add(
            "ERROR",
            "MISSING_EFFECT",
            "Add an Effect element to the policy statement with a value of Allow or Deny.",
            [(path, st)],
        )
    elif effect.kind != "string":
        f.add(
            "ERROR",
            "DATA_TYPE_MISMATCH",
            "The text does not match the expected JSON data type String.",
            [([*path, {"value": "Effect"}], effect)],
        )
    elif effect.value not in ("Allow", "Deny"):
        f.add(
            "ERROR",
            "INVALID_EFFECT",
            f"The effect {effect.value} is not valid. Use Allow or Deny.",
            [([*path, {"value": "Effect"}], effect)],
        )
    allow = effect is not None and effect.value == "Allow"

    for principal in ("Principal", "NotPrincipal"):
        node = st.get(principal)
        if node is not None and policy_type in ("IDENTITY_POLICY", "SERVICE_CONTROL_POLICY"):
            f.add(
                "ERROR",
                "UNSUPPORTED_PRINCIPAL",
                f"This type of policy does not support the {principal} element. Remove the {principal} element.",
                [([*path, {"value": principal}], node)],
            )
    if policy_type == "RESOURCE_POLICY" and st.get("Principal") is None and st.get("NotPrincipal") is None:
        f.add("ERROR", "MISSING_PRINCIPAL", "Add a Principal element to the policy statement.", [(path, st)])

    # ---- actions
    action_key = (
        "Action" if st.get("Action") is not None else "NotAction" if st.get("NotAction") is not None else None
    )
    actions: list[tuple[str, Node, Path]] = []
    if action_key is None:
        f.add(
            "ERROR",
            "MISSING_ACTION",
            "Add an Action or NotAction element to the policy statement.",
            [(path, st)],
        )
    else:
        anode = st.get(action_key)
        assert anode is not None
        if anode.kind == "array" and not anode.items:
            code = "EMPTY_ARRAY_ACTION" if action_key == "Action" else "EMPTY_ARRAY_NOT_ACTION"
            f.add(
                "SUGGESTION",
                code,
                "This statement includes no actions and does not affect the policy. Specify actions.",
                [([*path, {"value": action_key}], anode)],
            )
        actions = _strings(f, anode, [*path, {"value": action_key}]) or []
        for value, node, apath in actions:
            _check_action(f, value, node, apath)
        for kept, redundant in _redundant(actions, _action_covers):
            f.add(
                "SUGGESTION",
                "REDUNDANT_ACTION",
                "The 2 action(s) are redundant because they provide similar permissions. Update the policy "
                f"to remove the redundant action such as: {redundant[0]}.",
                [(kept[2], kept[1]), (redundant[2], redundant[1])],
            )

    # ---- resources
    resource_key = (
        "Resource"
        if st.get("Resource") is not None
        else "NotResource"
        if st.get("NotResource") is not None
        else None
    )
    resources: list[tuple[str, Node, Path]] = []
    if resource_key is None:
        if policy_type != "SERVICE_CONTROL_POLICY":
            f.add(
                "ERROR",
                "MISSING_RESOURCE",
                "Add a Resource or NotResource element to the policy statement.",
                [(path, st)],
            )
    else:
        rnode = st.get(resource_key)
        assert rnode is not None
        if rnode.kind == "array" and not rnode.items:
            code = "EMPTY_ARRAY_RESOURCE" if resource_key == "Resource" else "EMPTY_ARRAY_NOT_RESOURCE"
            f.add(
                "SUGGESTION",
                code,
                "This statement includes no resources and does not affect the policy. Specify resources.",
                [([*path, {"value": resource_key}], rnode)],
            )
        resources = _strings(f, rnode, [*path, {"value": resource_key}]) or []
        for value, node, rpath in resources:
            if value != "*" and not value.startswith("arn:"):
                f.add(
                    "ERROR",
                    "INVALID_ARN_PREFIX",
                    "Add the required prefix (arn) to the resource ARN.",
                    [(rpath, node)],
                )
        for kept, redundant in _redundant(resources, _resource_covers):
            f.add(
                "SUGGESTION",
                "REDUNDANT_RESOURCE",
                "The 2 resource ARN(s) are redundant because they reference the same resource. Review the use "
                f"of wildcards (*), or remove the resource {redundant[0]} to remove the redundancy.",
                [(kept[2], kept[1]), (redundant[2], redundant[1])],
            )

    # ---- over-permissive grants (Allow + Resource "*")
    if not allow or resource_key != "Resource":
        return
    stars = [r for r in resources if r[0] == "*"]
    if not stars:
        return
    conditions = _condition_keys(st.get("Condition"))
    star_loc = (stars[0][2], stars[0][1])
    if action_key == "Action":
        for target, cond_key, prefix in (
            ("iam:CreateServiceLinkedRole", "iam:awsservicename", "CREATE_SLR"),
            ("iam:PassRole", "iam:passedtoservice", "PASS_ROLE"),
        ):
            if cond_key in conditions:
                continue
            explicit = [a for a in actions if a[0].lower() == target.lower()]
            wild = [
                a for a in actions if ("*" in a[0] or "?" in a[0]) and (a[0] == "*" or _matches(a[0], target))
            ]
            if prefix == "CREATE_SLR":
                if wild:
                    f.add(
                        "WARNING",
                        "CREATE_SLR_WITH_STAR_IN_ACTION_AND_RESOURCE",
                        "Using wildcards (*) in the action and the resource can allow creation of unintended service-linked "
                        "roles because it allows iam:CreateServiceLinkedRole permissions on all resources. We recommend "
                        "that you specify resource ARNs instead.",
                        [(wild[0][2], wild[0][1]), star_loc],
                    )
                elif explicit:
                    f.add(
                        "WARNING",
                        "CREATE_SLR_WITH_STAR_IN_RESOURCE",
                        "Using the iam:CreateServiceLinkedRole action with wildcards (*) in the resource can allow "
                        "creation of unintended service-linked roles because it allows iam:CreateServiceLinkedRole "
                        "permissions on all resources. We recommend that you specify resource ARNs instead.",
                        [(explicit[0][2], explicit[0][1]), star_loc],
                    )
            elif wild:
                f.add(
                    "SECURITY_WARNING",
                    "PASS_ROLE_WITH_STAR_IN_ACTION_AND_RESOURCE",
                    "Using wildcards (*) in the action and the resource can be overly permissive because it allows "
                    "iam:PassRole permissions on all resources. We recommend that you specify resource ARNs or add "
                    "the iam:PassedToService condition key to your statement.",
                    [(wild[0][2], wild[0][1]), star_loc],
                )
            elif explicit:
                f.add(
                    "SECURITY_WARNING",
                    "PASS_ROLE_WITH_STAR_IN_RESOURCE",
                    "Using the iam:PassRole action with wildcards (*) in the resource can be overly permissive because "
                    "it allows iam:PassRole permissions on multiple resources. We recommend that you specify resource "
                    "ARNs or add the iam:PassedToService condition key to your statement.",
                    [(explicit[0][2], explicit[0][1]), star_loc],
                )
    elif (
        action_key == "NotAction"
        and "iam:passedtoservice" not in conditions
        and not any(_action_covers(a[0], "iam:PassRole") or a[0].lower() == "iam:passrole" for a in actions)
    ):
        anode = st.get("NotAction")
        assert anode is not None
        f.add(
            "SECURITY_WARNING",
            "PASS_ROLE_WITH_NOT_ACTION_AND_STAR_IN_RESOURCE",
            "Using the iam:PassRole action with NotAction and wildcards (*) in the resource can be overly "
            "permissive because it allows iam:PassRole permissions on all resources. We recommend that you "
            "specify resource ARNs or add the iam:PassedToService condition key to your statement.",
            [([*path, {"value": "NotAction"}], anode), star_loc],
        )


def _normalized(st: Node) -> str:
    def norm(value: Any) -> Any:
        if isinstance(value, list):
            return sorted((norm(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        return value

    plain = st.plain()
    if isinstance(plain, dict):
        plain = {
            k: ([v] if k in ("Action", "NotAction", "Resource", "NotResource") and isinstance(v, str) else v)
            for k, v in plain.items()
            if k != "Sid"
        }
    return json.dumps(norm(plain), sort_keys=True)


def validate_policy_text(text: str, policy_type: str = "IDENTITY_POLICY") -> list[dict[str, Any]]:
    """All findings for one policy document (raises PolicySyntaxError when the text is not JSON)."""
    root = parse_policy(text)
    f = _Findings(text)
    if root.kind != "object":
        f.add(
            "ERROR",
            "DATA_TYPE_MISMATCH",
            "The text does not match the expected JSON data type Object.",
            [([], root)],
        )
        return f.items
    for key, key_node, _ in root.members:
        if key not in ("Version", "Id", "Statement"):
            f.add(
                "ERROR",
                "INVALID_POLICY_ELEMENT",
                f"The policy element {key} is not valid.",
                [([{"value": key}], key_node)],
            )
    version = root.get("Version")
    if version is None:
        f.add(
            "WARNING",
            "MISSING_VERSION",
            "We recommend that you specify the Version element to help you with debugging permission issues.",
            [([], root)],
        )
    elif version.kind != "string":
        f.add(
            "ERROR",
            "DATA_TYPE_MISMATCH",
            "The text does not match the expected JSON data type String.",
            [([{"value": "Version"}], version)],
        )
    elif version.value not in VALID_VERSIONS:
        f.add(
            "ERROR",
            "INVALID_VERSION",
            f"The version {version.value} is not valid. Use one of the following versions: {', '.join(VALID_VERSIONS)}",
            [([{"value": "Version"}], version)],
        )
    statement = root.get("Statement")
    if statement is None:
        f.add("ERROR", "MISSING_STATEMENT", "Add a Statement element to the policy.", [([], root)])
        return f.items
    entries: list[tuple[Node, Path]]
    if statement.kind == "array":
        entries = [(st, [{"value": "Statement"}, {"index": i}]) for i, st in enumerate(statement.items)]
    elif statement.kind == "object":
        entries = [(statement, [{"value": "Statement"}])]
    else:
        f.add(
            "ERROR",
            "DATA_TYPE_MISMATCH",
            "The text does not match the expected JSON data type Array or Object.",
            [([{"value": "Statement"}], statement)],
        )
        return f.items
    sids: dict[str, Path] = {}
    seen: dict[str, Path] = {}
    for st, path in entries:
        _check_statement(f, st, path, policy_type)
        if st.kind != "object":
            continue
        sid = st.get("Sid")
        if sid is not None and sid.kind == "string" and sid.value:
            if sid.value in sids:
                f.add(
                    "ERROR",
                    "INVALID_SID_UNIQUENESS",
                    f"Duplicate Sid {sid.value}. Use a unique Sid value for each statement in the policy.",
                    [([*path, {"value": "Sid"}], sid)],
                )
            sids.setdefault(sid.value, path)
        key = _normalized(st)
        if key in seen:
            f.add(
                "SUGGESTION",
                "REDUNDANT_STATEMENT",
                "The statement is redundant because it provides identical permissions to another statement in the policy. Remove the redundant statement.",
                [(path, st)],
            )
        seen.setdefault(key, path)
    return f.items


# --------------------------------------------------------------------------- HTTP
def _error(err: ServiceError) -> Response:
    body: dict[str, Any] = {"message": err.message, **err.extra}
    headers = {"x-amzn-ErrorType": err.code, "x-amzn-RequestId": str(uuid.uuid4())}
    if err.code == "ThrottlingException" or err.status == 429:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return Response(json.dumps(body), status_code=err.status, media_type="application/json", headers=headers)


def _field_error(name: str, message: str) -> ServiceError:
    return ServiceError(
        "ValidationException",
        f"1 validation error detected: Value at '{name}' failed to satisfy constraint: {message}",
        400,
        reason="fieldValidationFailed",
        fieldList=[{"name": name, "message": message}],
    )


def _page(findings: list[dict[str, Any]], max_results: str | None, next_token: str | None) -> dict[str, Any]:
    start = 0
    if next_token:
        try:
            start = int(base64.b64decode(next_token, validate=True).decode().removeprefix("f:"))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ServiceError("ValidationException", "Invalid nextToken.", 400, reason="other") from None
    limit = len(findings)
    if max_results is not None:
        try:
            limit = int(max_results)
        except ValueError:
            raise _field_error("maxResults", "Member must be an integer") from None
        if limit < 1:
            raise _field_error("maxResults", "Member must have value greater than or equal to 1")
    out: dict[str, Any] = {"findings": findings[start : start + limit]}
    if start + limit < len(findings):
        out["nextToken"] = base64.b64encode(f"f:{start + limit}".encode()).decode()
    return out


def validate_request(sandbox: Sandbox, body: bytes, query: dict[str, str]) -> dict[str, Any]:
    try:
        params = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ServiceError(
            "ValidationException", "Could not parse the request body as JSON.", 400, reason="cannotParse"
        ) from None
    if not isinstance(params, dict):
        raise ServiceError(
            "ValidationException", "The request body must be a JSON object.", 400, reason="cannotParse"
        )
    for name in ("policyDocument", "policyType"):
        if params.get(name) is None:
            raise _field_error(name, "Member must not be null")
        if not isinstance(params[name], str):
            raise _field_error(name, "Member must be a string")
    if params["policyType"] not in POLICY_TYPES:
        raise _field_error("policyType", f"Member must satisfy enum value set: [{', '.join(POLICY_TYPES)}]")
    if params.get("locale") is not None and params["locale"] not in LOCALES:
        raise _field_error("locale", f"Member must satisfy enum value set: [{', '.join(LOCALES)}]")
    resource_type = params.get("validatePolicyResourceType")
    if resource_type is not None and resource_type not in RESOURCE_TYPES:
        raise _field_error(
            "validatePolicyResourceType", f"Member must satisfy enum value set: [{', '.join(RESOURCE_TYPES)}]"
        )
    text: str = params["policyDocument"]
    try:
        findings = validate_policy_text(text, params["policyType"])
    except PolicySyntaxError as exc:
        if not sandbox.config.access_analyzer_syntax_error_as_finding:
            raise ServiceError(
                "ValidationException",
                f"Invalid policy document: {exc.message} at offset {exc.offset}.",
                400,
                reason="cannotParse",
            ) from None
        f = _Findings(text)
        pos = f.position(exc.offset)
        f.items.append(
            {
                "findingType": "ERROR",
                "issueCode": "JSON_SYNTAX_ERROR",
                "findingDetails": f"Fix the JSON syntax error at index {exc.offset} line {pos['line']} column {pos['column']}.",
                "learnMoreLink": f"{LEARN_MORE}#access-analyzer-reference-policy-checks-error-json-syntax-error",
                "locations": [f.location([], exc.offset, exc.offset)],
            }
        )
        findings = f.items
    return _page(findings, query.get("maxResults"), query.get("nextToken"))


async def validate_policy(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    delay = sandbox.faults.latency_seconds(SERVICE, OPERATION)
    if delay:
        import asyncio

        await asyncio.sleep(delay)
    body = await request.body()
    try:
        aws_fault_guard(sandbox, SERVICE, OPERATION, ERRORS, family=SERVICE)
        result = validate_request(sandbox, body, dict(request.query_params))
    except ServiceError as err:
        sandbox.calls.record(SERVICE, OPERATION, {}, err.status, err.code)
        return _error(err)
    sandbox.calls.record(SERVICE, OPERATION, {}, 200, None)
    return Response(
        json.dumps(result), media_type="application/json", headers={"x-amzn-RequestId": str(uuid.uuid4())}
    )


def routes() -> list[BaseRoute]:
    return [Route("/policy/validation", validate_policy, methods=["POST"])]
