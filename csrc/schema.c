/*
 * schema.c -- the request bodies, written once.  The field order of each array
 * is the key order of the JSON we send, so encoded bodies are deterministic.
 * Nothing here is interpreted: validate.c walks these arrays, and
 * mp_open_schema exports the enums from the very lists the walker checks.
 */
#include "core.h"
#include "schema.h"

/* --- word lists ----------------------------------------------------------- */

static const char *const status_values[] = {
    "ready", "pending", "onboarding", "suspended", "resumed", "uninstalled", "error", NULL};
static const char *const ownership_values[] = {"owned", "linked", "sandbox", NULL};
static const char *const plan_type_values[] = {"prepayment", "subscription", NULL};
static const char *const level_values[] = {"info", "warn", "error", NULL};
/* The documented pattern is ^https?:// or ^sso: */
static const char *const href_prefixes[] = {"https://", "http://", "sso:", NULL};

static const mp_words status = {"status", status_values};
static const mp_words ownership = {"ownership", ownership_values};
static const mp_words billing_plan_type = {"billing_plan_type", plan_type_values};
static const mp_words notification_level = {"notification_level", level_values};
static const mp_words href = {NULL, href_prefixes};

/* What core.enums exports. */
static const mp_words *const exported[] = {
    &status, &ownership, &billing_plan_type, &notification_level, NULL};

/* --- field rows ----------------------------------------------------------- */

#define REQ 1
#define OPT 0
#define ROW(n, t, req, upd, words, obj, alt) {n, sizeof(n) - 1, t, req, upd, words, obj, alt}
#define STRING(n, req) ROW(n, MP_T_STRING, req, MP_U_SAME, NULL, NULL, NULL)
#define ENUM(n, req, w) ROW(n, MP_T_ENUM, req, MP_U_SAME, &(w), NULL, NULL)
#define BOOL(n) ROW(n, MP_T_BOOL, OPT, MP_U_SAME, NULL, NULL, NULL)
#define MAP(n) ROW(n, MP_T_MAP, OPT, MP_U_SAME, NULL, NULL, NULL)
#define OBJECT(n, o) ROW(n, MP_T_OBJECT, OPT, MP_U_SAME, NULL, &(o), NULL)
#define ARRAY(n, req, o) ROW(n, MP_T_ARRAY, req, MP_U_SAME, NULL, &(o), NULL)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
/* A negative array size stops the build if an object outgrows MP_MAX_FIELDS. */
#define OBJECT_DESC(a, open) {a, (int)COUNT(a) + 0 * (int)sizeof(char[COUNT(a) <= MP_MAX_FIELDS ? 1 : -1]), open}

#define CLOSED 0
#define OPEN 1

/* billingPlan.details[] and billingPlan.highlightedDetails[] */
static const mp_field detail_fields[] = {
    STRING("label", REQ),
    STRING("value", OPT),
};
static const mp_object detail = OBJECT_DESC(detail_fields, CLOSED);

/* The OpenAPI page allows additional properties on billingPlan itself. */
static const mp_field billing_plan_fields[] = {
    STRING("id", REQ),
    ENUM("type", REQ, billing_plan_type),
    STRING("name", REQ),
    STRING("description", OPT),
    BOOL("paymentMethodRequired"),
    STRING("cost", OPT),
    ARRAY("details", OPT, detail),
    ARRAY("highlightedDetails", OPT, detail),
    STRING("effectiveDate", OPT),
};
static const mp_object billing_plan = OBJECT_DESC(billing_plan_fields, OPEN);

static const mp_field notification_fields[] = {
    ENUM("level", REQ, notification_level),
    STRING("title", REQ),
    STRING("message", OPT),
    ROW("href", MP_T_PREFIXED, OPT, MP_U_SAME, &href, NULL, NULL),
};
static const mp_object notification = OBJECT_DESC(notification_fields, CLOSED);

/* The page lists three environments but does not forbid others. */
static const mp_field overrides_fields[] = {
    STRING("development", OPT),
    STRING("preview", OPT),
    STRING("production", OPT),
};
static const mp_object overrides = OBJECT_DESC(overrides_fields, OPEN);

static const mp_field secret_fields[] = {
    STRING("name", REQ),
    STRING("value", REQ),
    STRING("prefix", OPT),
    OBJECT("environmentOverrides", overrides),
};
static const mp_object secret = OBJECT_DESC(secret_fields, CLOSED);

/* PUT .../secrets, and the object form of the update body's `secrets`.  The
 * first field tells the two forms apart, so it must stay first. */
static const mp_field secrets_body_fields[] = {
    ARRAY("secrets", REQ, secret),
    BOOL("partial"),
};
static const mp_object secrets_body = OBJECT_DESC(secrets_body_fields, CLOSED);

/* The import body; the update body is the same row by row, read through the
 * `upd` column (and with nothing required at the root). */
static const mp_field resource_fields[] = {
    ROW("productId", MP_T_STRING, REQ, MP_U_ABSENT, NULL, NULL, NULL),
    STRING("name", REQ),
    ENUM("status", REQ, status),
    ENUM("ownership", OPT, ownership),
    MAP("metadata"),
    OBJECT("billingPlan", billing_plan),
    ROW("notification", MP_T_OBJECT, OPT, MP_U_OR_STRING, NULL, &notification, NULL),
    MAP("extras"),
    ROW("secrets", MP_T_ARRAY, OPT, MP_U_OR_OBJECT, NULL, &secret, &secrets_body),
};
static const mp_object resource = OBJECT_DESC(resource_fields, CLOSED);

static const mp_root roots[] = {
    {"import", &resource, 0},
    {"update", &resource, 1},
    {"secrets", &secrets_body, 0},
    {NULL, NULL, 0},
};

const mp_root *mp_schema_roots(void) { return roots; }

/* --- Lua side ------------------------------------------------------------- */

static void push_words(lua_State *L, const mp_words *w) {
  int i;
  lua_newtable(L);
  for (i = 0; w->values[i] != NULL; i++) {
    lua_pushstring(L, w->values[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

void mp_open_schema(lua_State *L) {
  int i;
  lua_newtable(L);
  for (i = 0; exported[i] != NULL; i++) {
    push_words(L, exported[i]);
    lua_setfield(L, -2, exported[i]->name);
  }
  lua_setfield(L, -2, "enums");
  lua_pushinteger(L, MP_MAX_DEPTH);
  lua_setfield(L, -2, "MAX_DEPTH");
  lua_pushinteger(L, MP_MAX_ERRORS);
  lua_setfield(L, -2, "MAX_ERRORS");
}
