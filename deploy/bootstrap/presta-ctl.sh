#!/bin/bash
# shellcheck disable=SC2016  # single-quoted PHP code and container-side shell, on purpose
# presta-ctl: the PrestaShop instance's own commands, installed by the bootstrap as
# /usr/local/sbin/presta-ctl. Run as root on the instance (SSM Session Manager or Run Command).
#
#   presta-ctl status              container, EFS mount, install lock, shop domain
#   presta-ctl cache-clear         purge PrestaShop's caches (as www-data, --env=prod)
#   presta-ctl thumbs [TYPE]       rebuild thumbnails (TYPE: all, products, categories, ...)
#   presta-ctl htaccess            regenerate .htaccess
#   presta-ctl set-domain [DOMAIN] store the shop's domain in the database (default: the
#                                  stack's, PS_DOMAIN), then .htaccess and caches
#   presta-ctl set-db-password     after a rotation: the database password from SSM into the
#                                  shop's parameters.php (atomically), the env file, caches
#   presta-ctl prestart | poststart   used by prestashop.service; not for people
#
# Every PrestaShop command runs inside the container as www-data: files created as root on EFS
# break Apache (500s, broken CSS/JS). No secret is printed or put on a command line.
set -euo pipefail

usage() { sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
case "${1:-}" in
  prestart|poststart|set-domain|set-db-password|cache-clear|thumbs|htaccess|status) ;;
  *) usage ;;
esac

R="${PRESTA_ROOT:-}"
# shellcheck source=/dev/null
. "$R/etc/presta/presta.conf"

MNT="$R/mnt/efs/psdata"
LOCK="$MNT/.presta-install.lock"
ENV_DIR="$R/run/prestashop"
ENV_FILE="$ENV_DIR/env"
PARAMS="$MNT/app/config/parameters.php"
STALE_MINUTES="${PRESTA_STALE_MINUTES:-30}"
WAIT_POLL="${PRESTA_WAIT_POLL:-10}"
WAIT_MINUTES="${PRESTA_WAIT_MINUTES:-45}"
CONTAINER=prestashop

say() { echo "presta-ctl: $*"; }
die() { echo "presta-ctl: ERROR: $*" >&2; exit 1; }

in_shop() { docker exec -u www-data -w /var/www/html "$@" "$CONTAINER"; }

# The shop's PHP, with the arguments in the environment (never interpolated into code).
shop_php() {
  local code=$1; shift
  docker exec -u www-data -w /var/www/html "$@" "$CONTAINER" php -d memory_limit=-1 -r "$code"
}

console_has() { in_shop php bin/console list prestashop --env=prod 2>/dev/null | grep -q "$1"; }

require_mount() {
  mountpoint -q "$MNT" || die "EFS is not mounted on $MNT: refusing to go on (PrestaShop would install over the live database on an empty directory)"
}

write_health_file() {
  case "$HEALTH_PATH" in
    /*.txt|/*.html) printf 'ok\n' > "$MNT$HEALTH_PATH.tmp" && mv "$MNT$HEALTH_PATH.tmp" "$MNT$HEALTH_PATH" ;;
    *) say "health-check path $HEALTH_PATH is not a static file: no health file written" ;;
  esac
}

# Whether the database already holds a shop (so that an install would drop its tables).
db_installed() {
  local out
  out=$(docker run --rm --env-file "$ENV_FILE" --entrypoint /bin/sh "$IMAGE" -c \
    'MYSQL_PWD="$DB_PASSWD" mysql -h "$DB_SERVER" -P "$DB_PORT" -u "$DB_USER" -N -B -e "SHOW TABLES LIKE \"${DB_PREFIX}configuration\"" "$DB_NAME"') \
    || die "cannot query the database $DB_HOST:$DB_PORT/$DB_NAME (security group, credentials?): not installing blind"
  [ -n "$out" ]
}

# The environment of the container: secrets from SSM into tmpfs, mode 600, root only.
write_env() {
  local install_auto=$1 db_password admin_password
  umask 077
  mkdir -p "$ENV_DIR"
  db_password=$(aws ssm get-parameter --region "$REGION" --with-decryption --name "$DB_PASSWORD_PARAM" --query Parameter.Value --output text)
  admin_password=""
  if [ -n "$ADMIN_PASSWORD_PARAM" ]; then
    admin_password=$(aws ssm get-parameter --region "$REGION" --with-decryption --name "$ADMIN_PASSWORD_PARAM" --query Parameter.Value --output text)
  elif [ "$install_auto" = 1 ]; then
    # secrets.adminPasswordParameter: none (an imported shop): never install over it.
    die "no admin password parameter (secrets.adminPasswordParameter: none, a shop that was already installed) but $PARAMS is missing: restore the shop's files instead of installing a new one"
  fi
  {
    echo "DB_SERVER=$DB_HOST"
    echo "DB_PORT=$DB_PORT"
    echo "DB_NAME=$DB_NAME"
    echo "DB_USER=$DB_USER"
    echo "DB_PASSWD=$db_password"
    echo "DB_PREFIX=ps_"
    echo "ADMIN_MAIL=$ADMIN_EMAIL"
    echo "ADMIN_PASSWD=$admin_password"
    echo "PS_DOMAIN=$PS_DOMAIN"
    echo "PS_ENABLE_SSL=$PS_ENABLE_SSL"
    echo "PS_INSTALL_AUTO=$install_auto"
    echo "PS_ERASE_DB=0"
    echo "PS_INSTALL_DB=0"
    echo "PS_HANDLE_DYNAMIC_DOMAIN=0"
    echo "PS_FOLDER_ADMIN=$ADMIN_FOLDER"
    echo "PS_LANGUAGE=$LANGUAGE"
    echo "PS_COUNTRY=$COUNTRY"
    echo "PS_DEV_MODE=0"
    if [ -n "$EXTRA_ENV" ]; then printf '%s\n' "$EXTRA_ENV"; fi
  } > "$ENV_FILE.tmp"
  chmod 600 "$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

lock_age_minutes() {
  local now since
  now=$(date +%s)
  since=$(stat -c %Y "$LOCK/owner" 2>/dev/null || stat -c %Y "$LOCK")
  echo $(( (now - since) / 60 ))
}

# Decides whether this start installs PrestaShop: exactly one instance of the group does.
prestart() {
  require_mount
  rm -f "$MNT/docker_updt_ps_domains.php"
  write_health_file
  if [ -f "$PARAMS" ]; then
    write_env 0
    say "PrestaShop is installed on EFS: normal start"
    return
  fi
  write_env 0
  if mkdir "$LOCK" 2>/dev/null; then
    echo "$INSTANCE_ID $(date -Is)" > "$LOCK/owner"
    if db_installed; then
      rm -rf "$LOCK"
      die "the database $DB_NAME already holds a shop but EFS has no app/config/parameters.php: refusing to install (the installer would drop its tables). Restore the EFS files, or check that the right file system is mounted."
    fi
    say "install lock won by $INSTANCE_ID: this instance installs PrestaShop"
    write_env 1
    return
  fi
  local owner
  owner=$(cat "$LOCK/owner" 2>/dev/null || echo unknown)
  if [ "$(lock_age_minutes)" -ge "$STALE_MINUTES" ]; then
    die "stale install lock $LOCK (held by: $owner, older than $STALE_MINUTES min) and no parameters.php: the install crashed. Look at that instance's /var/log/presta-bootstrap.log, then remove the lock (rmdir/rm -r) to let an instance install again."
  fi
  say "another instance installs PrestaShop ($owner): waiting for it"
  local waited=0
  while [ ! -f "$PARAMS" ]; do
    [ -d "$LOCK" ] || die "the install by $owner ended without app/config/parameters.php: see its log"
    if [ $((waited / 60)) -ge "$WAIT_MINUTES" ]; then
      die "waited $WAIT_MINUTES min for the install by $owner"
    fi
    sleep "$WAIT_POLL"
    waited=$((waited + WAIT_POLL))
  done
  say "the install finished: normal start"
}

# After the container started: finish a first install, keep the domain in the database right.
poststart() {
  require_mount
  if [ -d "$LOCK" ] && grep -q "^$INSTANCE_ID " "$LOCK/owner" 2>/dev/null; then
    say "waiting for the installer to finish"
    local waited=0
    until [ -f "$PARAMS" ] && [ ! -d "$MNT/install" ]; do
      if [ $((waited / 60)) -ge "$WAIT_MINUTES" ]; then
        die "the installer did not finish within $WAIT_MINUTES min; the lock stays for a person to look (docker logs $CONTAINER)"
      fi
      sleep "$WAIT_POLL"
      waited=$((waited + WAIT_POLL))
    done
    chown -R 33:33 "$MNT"
    rm -f "$MNT/docker_updt_ps_domains.php"
    rm -rf "$LOCK"
    say "first install done; ownership set to www-data (33:33); lock released"
    write_env 0
  fi
  rm -f "$MNT/docker_updt_ps_domains.php"
  write_health_file
  local current
  current=$(shop_php 'require "config/config.inc.php"; echo Configuration::get("PS_SHOP_DOMAIN");' || true)
  if [ -n "$current" ] && [ "$current" != "$PS_DOMAIN" ]; then
    say "shop domain in the database is $current; the stack's is $PS_DOMAIN: updating"
    set_domain "$PS_DOMAIN"
  fi
}

set_domain() {
  local domain
  domain=$(printf '%s' "${1:-$PS_DOMAIN}" | tr '[:upper:]' '[:lower:]')
  case "$domain" in
    ''|*[!a-z0-9.:-]*) die "not a host name: '$domain'" ;;
  esac
  shop_php 'require "config/config.inc.php";
    $d = getenv("NEW_DOMAIN");
    Db::getInstance()->update("shop_url", ["domain" => pSQL($d), "domain_ssl" => pSQL($d)], "main = 1");
    Configuration::updateValue("PS_SHOP_DOMAIN", $d);
    Configuration::updateValue("PS_SHOP_DOMAIN_SSL", $d);
    $ssl = getenv("NEW_SSL") === "1" ? 1 : 0;
    Configuration::updateValue("PS_SSL_ENABLED", $ssl);
    Configuration::updateValue("PS_SSL_ENABLED_EVERYWHERE", $ssl);
    Tools::generateHtaccess();
    Tools::clearSmartyCache();
    Media::clearCache();
    echo "domain set to " . ($ssl ? "https" : "http") . "://$d\n";' -e "NEW_DOMAIN=$domain" -e "NEW_SSL=$PS_ENABLE_SSL"
}

# After `presta-reconciler rotate-db-password`: the new value, read from SSM (never on a
# command line: docker takes it from this process's environment), replaces
# database_password in the shop's parameters.php on EFS through a temporary file renamed
# over it, as www-data; then the container's env file and the caches follow.
set_db_password() {
  local db_password
  require_mount
  [ -f "$PARAMS" ] || die "PrestaShop is not installed ($PARAMS missing): nothing to update"
  db_password=$(aws ssm get-parameter --region "$REGION" --with-decryption --name "$DB_PASSWORD_PARAM" --query Parameter.Value --output text)
  [ -n "$db_password" ] || die "the parameter $DB_PASSWORD_PARAM is empty"
  NEW_DB_PASSWD="$db_password" shop_php '$f = "app/config/parameters.php";
    $p = require $f;
    if (!is_array($p) || !isset($p["parameters"])) { fwrite(STDERR, "unexpected parameters.php\n"); exit(1); }
    $p["parameters"]["database_password"] = getenv("NEW_DB_PASSWD");
    $tmp = $f . ".tmp" . getmypid();
    if (file_put_contents($tmp, "<?php return " . var_export($p, true) . ";\n") === false || !rename($tmp, $f)) { fwrite(STDERR, "cannot write parameters.php\n"); exit(1); }
    if (function_exists("opcache_invalidate")) { opcache_invalidate($f, true); }
    echo "database_password updated in parameters.php\n";' -e NEW_DB_PASSWD
  if [ -f "$ENV_FILE" ]; then
    umask 077
    # printf is a builtin: the value is never on a command line.
    while IFS= read -r line; do
      case "$line" in
        DB_PASSWD=*) printf 'DB_PASSWD=%s\n' "$db_password" ;;
        *) printf '%s\n' "$line" ;;
      esac
    done < "$ENV_FILE" > "$ENV_FILE.tmp"
    chmod 600 "$ENV_FILE.tmp" && mv "$ENV_FILE.tmp" "$ENV_FILE"
  fi
  cache_clear
}

cache_clear() {
  in_shop php -d memory_limit=-1 bin/console cache:clear --env=prod --no-warmup \
    || shop_php 'require "config/config.inc.php"; Tools::clearAllCache(); Media::clearCache(); echo "caches cleared\n";'
}

thumbs() {
  local type=${1:-all}
  if console_has 'prestashop:thumbnails:regenerate'; then
    in_shop php -d memory_limit=-1 bin/console prestashop:thumbnails:regenerate "$type" --env=prod
  else
    docker cp "$R/usr/local/share/presta/rebuild_thumbs.php" "$CONTAINER:/tmp/rebuild_thumbs.php"
    in_shop php -d memory_limit=-1 /tmp/rebuild_thumbs.php "$type"
  fi
}

htaccess() {
  if console_has 'prestashop:htaccess:generate'; then
    in_shop php bin/console prestashop:htaccess:generate --force --env=prod
  else
    shop_php 'require "config/config.inc.php"; Tools::generateHtaccess() or exit(1); echo ".htaccess regenerated\n";'
  fi
}

status() {
  if mountpoint -q "$MNT"; then say "EFS $EFS_ID mounted on $MNT"; else say "EFS NOT mounted on $MNT"; fi
  if [ -d "$LOCK" ]; then say "install lock held by $(cat "$LOCK/owner" 2>/dev/null) for $(lock_age_minutes) min"; fi
  if [ -f "$PARAMS" ]; then say "PrestaShop installed"; else say "PrestaShop NOT installed"; fi
  docker ps --filter "name=^$CONTAINER\$" --format 'container {{.Names}}: {{.Status}} ({{.Image}})'
  say "stack domain: $PS_DOMAIN"
}

case "${1:-}" in
  prestart) prestart ;;
  poststart) poststart ;;
  set-domain) set_domain "${2:-}" ;;
  set-db-password) set_db_password ;;
  cache-clear) cache_clear ;;
  thumbs) thumbs "${2:-all}" ;;
  htaccess) htaccess ;;
  status) status ;;
  *) usage ;;
esac
