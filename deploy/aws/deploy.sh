#!/usr/bin/env bash
# Deploy (create or update) the ANB stack on AWS: upload the .deb, deploy
# deploy/aws/template.yaml with CloudFormation, print the service's URL.
#
#   deploy/aws/deploy.sh --stack-name anb-prod --deb target/debian/anb_0.1.0-1_amd64.deb
#
# Needs the AWS CLI (v2, or v1 >= 1.29) with credentials allowed to create
# the stack's resources (IAM roles included), and sha256sum. See usage below.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
template="$here/template.yaml"

usage() {
    cat <<'USAGE'
Usage: deploy/aws/deploy.sh --stack-name NAME --deb FILE [options]

Uploads FILE to s3://BUCKET/packages/NAME/<file>-<sha256>.deb (a new package
is a new key, so its instances are replaced one by one), then runs
`aws cloudformation deploy` on deploy/aws/template.yaml and prints the URL.

Required:
  --stack-name NAME        CloudFormation stack (letters, digits, '-'; at most 60)
  --deb FILE               the .deb built from this repository

Options:
  --bucket BUCKET          artifact bucket for the .deb and the template
                           (default: anb-artifacts-ACCOUNT-REGION, created
                           private and encrypted if missing)
  --region REGION          AWS region (default: AWS_REGION, AWS_DEFAULT_REGION
                           or the CLI's configured region)
  --certificate-arn ARN    ACM certificate: HTTPS on 443, HTTP redirects to it
  --public-base-url URL    base of links handed to clients (default: the ALB URL)
  --alarm-email ADDRESS    subscribe ADDRESS to the alarm topic
  --no-deletion-protection create the database without deletion protection
                           (throwaway stacks)
  --parameter KEY=VALUE    any other template parameter (repeatable), e.g.
                           --parameter WebMaxSize=6; the first deployment
                           needs --parameter MailFrom=ADDRESS (the sender of
                           the verification mail, verified in SES)
  --template FILE          another template (default: deploy/aws/template.yaml)
  -h, --help               this text
USAGE
}

die() {
    echo "deploy.sh: $*" >&2
    exit 2
}

stack=""
deb=""
bucket=""
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
overrides=()

while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --stack-name | --deb | --bucket | --region | --certificate-arn | --public-base-url | --alarm-email | --parameter | --template)
            if [ $# -lt 2 ] || [ -z "$2" ]; then
                die "$1 needs a value"
            fi
            case "$1" in
                --stack-name) stack="$2" ;;
                --deb) deb="$2" ;;
                --bucket) bucket="$2" ;;
                --region) region="$2" ;;
                --certificate-arn) overrides+=("CertificateArn=$2") ;;
                --public-base-url) overrides+=("PublicBaseUrl=$2") ;;
                --alarm-email) overrides+=("AlarmEmail=$2") ;;
                --template) template="$2" ;;
                --parameter)
                    [[ "$2" =~ ^[A-Za-z0-9]+=.*$ ]] || die "--parameter takes KEY=VALUE, not '$2'"
                    case "${2%%=*}" in
                        PackageBucket | PackageKey) die "${2%%=*} is set by this script" ;;
                    esac
                    overrides+=("$2")
                    ;;
            esac
            shift 2
            ;;
        --no-deletion-protection)
            overrides+=("DbDeletionProtection=false")
            shift
            ;;
        *)
            usage >&2
            die "unknown argument '$1'"
            ;;
    esac
done

[ -n "$stack" ] || { usage >&2; die "--stack-name is required"; }
[ -n "$deb" ] || { usage >&2; die "--deb is required"; }
[[ "$stack" =~ ^[A-Za-z][A-Za-z0-9-]{0,59}$ ]] \
    || die "stack name '$stack': a letter, then letters, digits or '-', at most 60 characters (it names the queues)"
[ -f "$deb" ] || die "no such file: $deb"
[[ "$deb" == *.deb ]] || die "$deb is not a .deb"
[ -f "$template" ] || die "no such template: $template"
command -v aws >/dev/null || die "the AWS CLI (aws) is not installed"
command -v sha256sum >/dev/null || die "sha256sum is not installed"

if [ -z "$region" ]; then
    region=$(aws configure get region 2>/dev/null || true)
fi
[ -n "$region" ] || die "no region: pass --region or set AWS_REGION"
export AWS_REGION="$region" AWS_DEFAULT_REGION="$region"

if [ -z "$bucket" ]; then
    account=$(aws sts get-caller-identity --query Account --output text)
    bucket="anb-artifacts-$account-$region"
fi
[[ "$bucket" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "invalid bucket name '$bucket'"

# The artifact bucket: private, encrypted, created when missing.
if ! aws s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
    echo "creating artifact bucket s3://$bucket"
    if [ "$region" = us-east-1 ]; then
        aws s3api create-bucket --bucket "$bucket" >/dev/null
    else
        aws s3api create-bucket --bucket "$bucket" \
            --create-bucket-configuration "LocationConstraint=$region" >/dev/null
    fi
    aws s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
        BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
    aws s3api put-bucket-encryption --bucket "$bucket" --server-side-encryption-configuration \
        '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
fi

# Content-addressed key: the same package keeps its key (no instance
# replacement on a redeploy), a new one gets a new key.
digest=$(sha256sum "$deb" | cut -c1-16)
name=$(basename "$deb" .deb)
name=${name//[^A-Za-z0-9._-]/_}
key="packages/$stack/$name-$digest.deb"
echo "uploading $deb to s3://$bucket/$key"
aws s3 cp --only-show-errors "$deb" "s3://$bucket/$key"

# The template is over CloudFormation's 51,200-byte inline limit, so it
# travels through the same bucket (--s3-bucket).
echo "deploying stack $stack in $region (this takes 20-40 minutes on creation)"
aws cloudformation deploy \
    --template-file "$template" \
    --stack-name "$stack" \
    --s3-bucket "$bucket" \
    --s3-prefix "templates/$stack" \
    --capabilities CAPABILITY_NAMED_IAM \
    --no-fail-on-empty-changeset \
    --parameter-overrides "PackageBucket=$bucket" "PackageKey=$key" ${overrides[@]+"${overrides[@]}"}

url=$(aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='AlbUrl'].OutputValue" --output text)
if [ -z "$url" ] || [ "$url" = None ]; then
    die "stack $stack has no AlbUrl output"
fi
echo "$url"
