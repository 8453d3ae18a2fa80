--- Resource objects, as `get` and `list` return them.
--
-- A resource is the decoded JSON object with every field the API returned
-- (unknown ones too), plus methods through its metatable.  The installation it
-- came from is kept in a weak side table, not in a field, so it can never
-- collide with a field of the API.
-- @module vercel.marketplace.resource
local M = {}

local owner = setmetatable({}, { __mode = "k" })
local methods = {}
local Resource = { __name = "vercel.marketplace.resource", __index = methods }

function Resource.__tostring(r)
  return ("vercel.marketplace.resource(%s)"):format(tostring(methods.partner_id(r)))
end

--- A resource object: the fields the API returned, and these methods.
-- @type Resource

--- The partner's id of this resource (`id` from `get`, `partnerId` from `list`).
-- @function Resource:partner_id
function methods:partner_id()
  return rawget(self, "id") or rawget(self, "partnerId")
end

--- Update this resource (PATCH): see `vercel.marketplace.Installation:update`.
-- @function Resource:update
function methods:update(patch)
  return owner[self]:update(self:partner_id(), patch)
end

--- Delete this resource: see `vercel.marketplace.Installation:delete`.
-- @function Resource:delete
function methods:delete()
  return owner[self]:delete(self:partner_id())
end

--- Replace this resource's fields by what the API has now.
-- @return the resource itself, or nil, err
-- @function Resource:refresh
function methods:refresh()
  local fresh, err = owner[self]:get(self:partner_id())
  if not fresh then return nil, err end
  for k in pairs(self) do self[k] = nil end
  for k, v in pairs(fresh) do self[k] = v end
  return self
end

--- Module functions.
-- @section functions

--- Give a decoded table the resource methods, bound to installation `inst`.
function M.wrap(inst, t)
  owner[t] = inst
  return setmetatable(t, Resource)
end

--- Is `v` what `list` can hand out: an array (maybe empty) of JSON objects?
-- A server that answers `{"resources": [1, 2]}` or `{"resources": {"a": {}}}`
-- gets a `decode` error, not resources that are not.
function M.is_list(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for k, item in pairs(v) do
    if type(k) ~= "number" or type(item) ~= "table" or getmetatable(item) ~= nil then return false end
    n = n + 1
  end
  return n == #v
end

--- Is `v` a resource object?
function M.is(v)
  return getmetatable(v) == Resource
end

return M
