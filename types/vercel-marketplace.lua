---@meta vercel.marketplace

-- Type annotations of vercel.marketplace for lua-language-server (LuaLS).
-- Put this directory on `workspace.library` (.luarc.json:
-- `{"workspace.library": ["path/to/types"]}`) and editors complete request
-- fields, enum values and methods.  spec/types_spec.lua checks it against
-- the code and the schema in csrc/schema.c, so it cannot drift.

-- Enums -------------------------------------------------------------------

---@alias vercel.marketplace.Status "ready"|"pending"|"onboarding"|"suspended"|"resumed"|"uninstalled"|"error"
---@alias vercel.marketplace.Ownership "owned"|"linked"|"sandbox"
---@alias vercel.marketplace.BillingPlanType "prepayment"|"subscription"
---@alias vercel.marketplace.NotificationLevel "info"|"warn"|"error"
---@alias vercel.marketplace.ErrorKind "validation"|"http"|"timeout"|"transport"|"decode"|"interrupted"|"callback"|"aborted"
---@alias vercel.marketplace.BodyKind "import"|"update"|"secrets"

-- Request bodies ------------------------------------------------------------

---One row of `billingPlan.details` or `billingPlan.highlightedDetails`.
---@class vercel.marketplace.BillingPlanDetail
---@field label string
---@field value? string

---A billing plan; keys beyond these are allowed and sent as they are.
---@class vercel.marketplace.BillingPlan
---@field id string
---@field type vercel.marketplace.BillingPlanType
---@field name string
---@field description? string
---@field paymentMethodRequired? boolean
---@field cost? string
---@field details? vercel.marketplace.BillingPlanDetail[]
---@field highlightedDetails? vercel.marketplace.BillingPlanDetail[]
---@field effectiveDate? string
---@field [string] any

---@class vercel.marketplace.Notification
---@field level vercel.marketplace.NotificationLevel
---@field title string
---@field message? string
---@field href? string `https://...`, `http://...` or `sso:...`

---Per-environment values of a secret (other environment names are allowed).
---@class vercel.marketplace.EnvironmentOverrides
---@field development? string
---@field preview? string
---@field production? string
---@field [string] string

---@class vercel.marketplace.Secret
---@field name string
---@field value string
---@field prefix? string the variable family: `POSTGRES` + `URL` gives `POSTGRES_URL`
---@field environmentOverrides? vercel.marketplace.EnvironmentOverrides

---The body of `PUT .../secrets`, and the object form of an update's `secrets`.
---@class vercel.marketplace.SecretsBody
---@field secrets vercel.marketplace.Secret[]
---@field partial? boolean overwrite only the secrets named, keep the others

---The body of `import` (PUT): no other key is allowed.
---@class vercel.marketplace.ImportBody
---@field productId string
---@field name string
---@field status vercel.marketplace.Status
---@field ownership? vercel.marketplace.Ownership
---@field metadata? table<string, any>
---@field billingPlan? vercel.marketplace.BillingPlan
---@field notification? vercel.marketplace.Notification
---@field extras? table<string, any>
---@field secrets? vercel.marketplace.Secret[]

---The body of `update` (PATCH): every field optional, no `productId`; a
---string `notification` clears it, `secrets` replaces (or merges, with
---`{secrets = ..., partial = true}`).
---@class vercel.marketplace.UpdateBody
---@field name? string
---@field status? vercel.marketplace.Status
---@field ownership? vercel.marketplace.Ownership
---@field metadata? table<string, any>
---@field billingPlan? vercel.marketplace.BillingPlan
---@field notification? vercel.marketplace.Notification|string
---@field extras? table<string, any>
---@field secrets? vercel.marketplace.Secret[]|vercel.marketplace.SecretsBody

-- Answers -------------------------------------------------------------------

---The answer of `import` and `update`.
---@class vercel.marketplace.ImportResult
---@field name string
---@field [string] any

---@class vercel.marketplace.AppUrl
---@field target string
---@field url string

---@class vercel.marketplace.ProtocolSettings
---@field experimentation? table<string, any>
---@field authentication? { appUrls?: vercel.marketplace.AppUrl[] }
---@field [string] any

---A resource as `get` and `list` return it: every field the API sent
---(unknown ones and unknown enum values too), plus methods.
---@class vercel.marketplace.Resource
---@field id? string the partner's id (from `get`)
---@field partnerId? string the partner's id (from `list`)
---@field internalId string Vercel's id
---@field name string
---@field productId string
---@field status? vercel.marketplace.Status|string
---@field billingPlanId? string
---@field notification? vercel.marketplace.Notification
---@field metadata? table<string, string|number|boolean|string[]|number[]>
---@field protocolSettings? vercel.marketplace.ProtocolSettings
---@field [string] any
local Resource = {}

---The partner's id: `id` from `get`, `partnerId` from `list`.
---@return string
function Resource:partner_id() end

---Update this resource (PATCH).
---@param patch vercel.marketplace.UpdateBody
---@return vercel.marketplace.ImportResult|nil
---@return vercel.marketplace.Error|nil err
function Resource:update(patch) end

---Delete this resource.
---@return true|nil
---@return vercel.marketplace.Error|nil err
function Resource:delete() end

---Replace this resource's fields by what the API has now.
---@return vercel.marketplace.Resource|nil self
---@return vercel.marketplace.Error|nil err
function Resource:refresh() end

-- Errors ----------------------------------------------------------------------

---One problem of a body: `{path = "secrets[1].value", message = "is required"}`.
---@class vercel.marketplace.Problem
---@field path string
---@field message string

---`error.limit` of a `rate_limited` answer.
---@class vercel.marketplace.RateLimit
---@field remaining? number
---@field reset? number epoch seconds
---@field resetMs? number epoch milliseconds
---@field total? number

---The second value of every failed call; `tostring(err)` reads well.
---@class vercel.marketplace.Error
---@field kind vercel.marketplace.ErrorKind
---@field message string
---@field status? integer the HTTP status
---@field code? string the API's `error.code`
---@field api_message? string the API's `error.message`
---@field request_id? string the `x-vercel-id` header
---@field retry_after? number seconds
---@field limit? vercel.marketplace.RateLimit
---@field errors? vercel.marketplace.Problem[] validation only: every problem
---@field method? string
---@field path? string
---@field attempts? integer requests sent, a transport's own resend included
---@field cause? any `callback`: what `on_progress` raised
---@field results? vercel.marketplace.BatchResult[] a stopped batch (`callback`, `interrupted`): every item's
---@field counts? vercel.marketplace.BatchCounts a stopped batch: how many items are in each state

---@class vercel.marketplace.BatchCounts
---@field done integer
---@field failed integer
---@field in_flight integer sent, outcome unknown
---@field not_started integer

---@class vercel.marketplace.error
local error_module = {}

---Make an error object.
---@param kind vercel.marketplace.ErrorKind
---@param message string
---@param fields? table
---@return vercel.marketplace.Error
function error_module.new(kind, message, fields) end

---Is `v` one of the client's error objects?
---@param v any
---@return boolean
function error_module.is(v) end

---A validation error for a body of `kind`.
---@param kind vercel.marketplace.BodyKind
---@param problems vercel.marketplace.Problem[]
---@return vercel.marketplace.Error
function error_module.validation(kind, problems) end

-- Installations ---------------------------------------------------------------

---Options of `installation` (all but `token` have defaults).
---@class vercel.marketplace.Options
---@field token string the installation access token (required)
---@field base_url? string default `https://api.vercel.com`; may carry a path prefix
---@field timeout? number seconds for one attempt (30)
---@field connect_timeout? number seconds to connect (10)
---@field retries? integer retries after the first attempt (2)
---@field retry_base? number first backoff in seconds, doubled per retry (0.5)
---@field max_retry_delay? number longest wait before a retry, in seconds (60)
---@field max_response_size? integer bytes (8 MiB)
---@field ca_file? string|false CA bundle (PEM) instead of the system's
---@field ca_path? string|false CA directory instead of the system's
---@field user_agent? string|false
---@field log? fun(line: string)|false one line per attempt (never bodies or headers)

---@class vercel.marketplace.BatchItem
---@field id string the resource id
---@field body? vercel.marketplace.ImportBody|vercel.marketplace.UpdateBody

---@class vercel.marketplace.BatchOptions
---@field concurrency? integer requests in flight at once (default 8)
---@field on_progress? fun(done: integer, total: integer)

---One result of a batch, in input order.
---@class vercel.marketplace.BatchResult
---@field ok boolean
---@field value? any the call's value when `ok`
---@field err? vercel.marketplace.Error when not `ok`
---@field state? "done"|"failed"|"in_flight"|"not_started" in the `results` of a batch that stopped early

---@class vercel.marketplace.Installation
---@field id string the installation id
---@field base_url string
local Installation = {}

---Import (upsert) a resource: `PUT /v1/installations/{id}/resources/{rid}`.
---@param id string the partner's resource id
---@param body vercel.marketplace.ImportBody
---@return vercel.marketplace.ImportResult|nil
---@return vercel.marketplace.Error|nil err
function Installation:import(id, body) end

---Update a resource partially: `PATCH .../resources/{rid}`.
---@param id string
---@param patch vercel.marketplace.UpdateBody
---@return vercel.marketplace.ImportResult|nil
---@return vercel.marketplace.Error|nil err
function Installation:update(id, patch) end

---Read one resource: `GET .../resources/{rid}`.
---@param id string
---@return vercel.marketplace.Resource|nil
---@return vercel.marketplace.Error|nil err
function Installation:get(id) end

---List the installation's resources (partner ids in `partnerId`).
---@return vercel.marketplace.Resource[]|nil
---@return vercel.marketplace.Error|nil err
function Installation:list() end

---Delete a resource: `DELETE .../resources/{rid}`.
---@param id string
---@return true|nil
---@return vercel.marketplace.Error|nil err
function Installation:delete(id) end

---Replace (or, with `{partial = true}`, merge) a resource's secrets.
---@param id string
---@param secrets vercel.marketplace.Secret[]
---@param opts? { partial?: boolean }
---@return true|nil
---@return vercel.marketplace.Error|nil err
function Installation:update_secrets(id, secrets, opts) end

---Import many resources; one result per item, in input order.
---@param items vercel.marketplace.BatchItem[] `{id = ..., body = ImportBody}`
---@param opts? vercel.marketplace.BatchOptions
---@return vercel.marketplace.BatchResult[]
function Installation:import_many(items, opts) end

---Update many resources; one result per item, in input order.
---@param items vercel.marketplace.BatchItem[] `{id = ..., body = UpdateBody}`
---@param opts? vercel.marketplace.BatchOptions
---@return vercel.marketplace.BatchResult[]
function Installation:update_many(items, opts) end

---Delete many resources; one result per item, in input order.
---@param items (vercel.marketplace.BatchItem|string)[] `{id = ...}` or ids
---@param opts? vercel.marketplace.BatchOptions
---@return vercel.marketplace.BatchResult[]
function Installation:delete_many(items, opts) end

---Close the connection now (also done on collection and by `<close>`).
function Installation:close() end

-- The module ----------------------------------------------------------------------

---@class vercel.marketplace.StatusConstants
---@field ready "ready"
---@field pending "pending"
---@field onboarding "onboarding"
---@field suspended "suspended"
---@field resumed "resumed"
---@field uninstalled "uninstalled"
---@field error "error"

---@class vercel.marketplace.OwnershipConstants
---@field owned "owned"
---@field linked "linked"
---@field sandbox "sandbox"

---@class vercel.marketplace.BillingPlanTypeConstants
---@field prepayment "prepayment"
---@field subscription "subscription"

---@class vercel.marketplace.NotificationLevelConstants
---@field info "info"
---@field warn "warn"
---@field error "error"

---@class vercel.marketplace
---@field VERSION string
---@field defaults vercel.marketplace.Options
---@field error vercel.marketplace.error
---@field status vercel.marketplace.StatusConstants reading an unknown name raises
---@field ownership vercel.marketplace.OwnershipConstants
---@field billing_plan_type vercel.marketplace.BillingPlanTypeConstants
---@field notification_level vercel.marketplace.NotificationLevelConstants
local marketplace = {}

---Open an installation: the handle every operation goes through.
---@param id string the installation id (`integrationConfigurationId`)
---@param opts vercel.marketplace.Options
---@return vercel.marketplace.Installation
function marketplace.installation(id, opts) end

---Validate a request body offline, exactly as `import`/`update` would.
---@param kind vercel.marketplace.BodyKind
---@param body vercel.marketplace.ImportBody|vercel.marketplace.UpdateBody|vercel.marketplace.SecretsBody
---@return true|nil
---@return vercel.marketplace.Error|nil err a `validation` error listing every problem
function marketplace.validate(kind, body) end

---Decode JSON text as answers are decoded: empty arrays stay marked arrays,
---integers stay integers (5.3+), so a file read this way is sent back as written.
---@param text string
---@return table|nil
---@return vercel.marketplace.Error|nil err a `decode` error
function marketplace.decode(text) end

---Mark a table as a JSON array, sent as `[]` even when empty (inside
---`metadata` and `extras` an unmarked empty table is `{}`).
---@generic T: table
---@param t? T the array (default: a new empty one)
---@return T t
function marketplace.array(t) end

return marketplace
