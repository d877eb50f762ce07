//! The route table: one [`Route`] per `google.api.http` binding (additional
//! bindings included) of every method of the contract, read from the method
//! options at startup, and the lookup of a request's method and path.

use super::descriptors::Descriptors;
use super::template::{CaptureError, Template, Variable};
use kar_proto::google::api::{HttpRule, http_rule::Pattern};
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value};

/// The name of the `google.api.http` method option.
const HTTP_EXTENSION: &str = "google.api.http";

/// A rule that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The `google.api.http` extension is not in the descriptors.
    #[error("the descriptors lack the google.api.http extension")]
    NoExtension,
    /// The option could not be read as an `HttpRule`.
    #[error("{method}: cannot read its google.api.http option: {source}")]
    Decode {
        /// The RPC.
        method: String,
        /// Why.
        source: prost::DecodeError,
    },
    /// A rule is malformed.
    #[error("{method}: {reason}")]
    Invalid {
        /// The RPC.
        method: String,
        /// What is wrong.
        reason: String,
    },
}

/// Where the request body goes.
#[derive(Clone, Debug)]
pub(crate) enum BodyRule {
    /// No body (`body` unset): fields come from the path and the query.
    None,
    /// `body: "*"`: the body is the whole request message, less the fields
    /// bound by the path.
    Whole,
    /// `body: "field"`: the body is that top-level field.
    Field(FieldDescriptor),
}

/// One HTTP binding of an RPC.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    /// The HTTP method.
    pub(crate) method: http::Method,
    /// The path template.
    pub(crate) template: Template,
    /// Where the body goes.
    pub(crate) body: BodyRule,
    /// The top-level response field sent instead of the whole response.
    pub(crate) response_body: Option<FieldDescriptor>,
    /// The RPC.
    pub(crate) rpc: MethodDescriptor,
    /// The gRPC path, `/package.Service/Method`.
    pub(crate) grpc_path: String,
    /// The OpenAPI operation id: `Service_Method`, suffixed with the binding
    /// number for additional bindings.
    pub(crate) operation_id: String,
}

/// The outcome of looking a request up.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// A route, with the decoded value of each path variable.
    Found(&'a Route, Vec<(Variable, String)>),
    /// The path is known but not for this method.
    MethodNotAllowed(Vec<http::Method>),
    /// No route has this path.
    NotFound,
    /// The path matched but is not valid percent-encoded UTF-8.
    BadEncoding,
}

/// All routes, most specific first.
#[derive(Clone, Debug)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Reads the rules of every service in `descriptors`.
    pub(crate) fn build(descriptors: &Descriptors) -> Result<Self, RuleError> {
        let pool = descriptors.pool();
        let extension = pool.get_extension_by_name(HTTP_EXTENSION).ok_or(RuleError::NoExtension)?;
        let mut routes = Vec::new();
        for service in pool.services() {
            for rpc in service.methods() {
                let options = rpc.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
                    continue;
                };
                let rule: HttpRule = rule
                    .transcode_to()
                    .map_err(|source| RuleError::Decode { method: rpc.full_name().to_owned(), source })?;
                let base = format!("{}_{}", service.name(), rpc.name());
                routes.push(Route::new(&rpc, &rule, base.clone())?);
                for (index, extra) in rule.additional_bindings.iter().enumerate() {
                    if !extra.additional_bindings.is_empty() {
                        return Err(invalid(&rpc, "additional bindings must not nest"));
                    }
                    routes.push(Route::new(&rpc, extra, format!("{base}_{}", index + 1))?);
                }
            }
        }
        routes.sort_by_key(|r| r.template.specificity());
        for (i, a) in routes.iter().enumerate() {
            if let Some(b) =
                routes[i + 1..].iter().find(|b| b.method == a.method && b.template.shape() == a.template.shape())
            {
                return Err(invalid(
                    &b.rpc,
                    &format!("{} {} is also bound to {}", a.method, a.template, a.rpc.full_name()),
                ));
            }
        }
        Ok(Self { routes })
    }

    /// Every route, most specific first.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route for `method` and the raw `path`.
    pub(crate) fn find(&self, method: &http::Method, path: &str) -> Lookup<'_> {
        let mut allowed = Vec::new();
        for route in &self.routes {
            match route.template.matches(path) {
                None => {}
                Some(Err(CaptureError::BadEncoding)) => return Lookup::BadEncoding,
                Some(Ok(captures)) if route.method == *method => return Lookup::Found(route, captures),
                Some(Ok(_)) if !allowed.contains(&route.method) => allowed.push(route.method.clone()),
                Some(Ok(_)) => {}
            }
        }
        if allowed.is_empty() { Lookup::NotFound } else { Lookup::MethodNotAllowed(allowed) }
    }
}

fn invalid(rpc: &MethodDescriptor, reason: &str) -> RuleError {
    RuleError::Invalid { method: rpc.full_name().to_owned(), reason: reason.to_owned() }
}

impl Route {
    fn new(rpc: &MethodDescriptor, rule: &HttpRule, operation_id: String) -> Result<Self, RuleError> {
        let (method, template) = match &rule.pattern {
            Some(Pattern::Get(t)) => (http::Method::GET, t),
            Some(Pattern::Put(t)) => (http::Method::PUT, t),
            Some(Pattern::Post(t)) => (http::Method::POST, t),
            Some(Pattern::Delete(t)) => (http::Method::DELETE, t),
            Some(Pattern::Patch(t)) => (http::Method::PATCH, t),
            Some(Pattern::Custom(custom)) => {
                let method = http::Method::from_bytes(custom.kind.as_bytes())
                    .map_err(|_| invalid(rpc, &format!("bad custom method {:?}", custom.kind)))?;
                (method, &custom.path)
            }
            None => return Err(invalid(rpc, "the rule has no pattern")),
        };
        if rpc.is_client_streaming() || rpc.is_server_streaming() {
            return Err(invalid(rpc, "streaming methods cannot be bound to HTTP"));
        }
        let template = Template::parse(template).map_err(|e| invalid(rpc, &e.to_string()))?;
        let input = rpc.input();
        for variable in template.variables() {
            let leaf = resolve(&input, &variable.field_path).map_err(|e| invalid(rpc, &e))?;
            if leaf.is_list() || leaf.is_map() || matches!(leaf.kind(), Kind::Message(_)) {
                return Err(invalid(rpc, &format!("path variable {} must be a singular scalar", variable.name())));
            }
        }
        let body = match rule.body.as_str() {
            "" => BodyRule::None,
            "*" => BodyRule::Whole,
            name => BodyRule::Field(
                input.get_field_by_name(name).ok_or_else(|| invalid(rpc, &format!("no body field {name:?}")))?,
            ),
        };
        if let BodyRule::Field(field) = &body
            && template.variables().iter().any(|v| v.field_path[0] == field.name())
        {
            return Err(invalid(rpc, "the body field is also bound by the path"));
        }
        let response_body = match rule.response_body.as_str() {
            "" => None,
            name => Some(
                rpc.output()
                    .get_field_by_name(name)
                    .ok_or_else(|| invalid(rpc, &format!("no response field {name:?}")))?,
            ),
        };
        let grpc_path = format!("/{}/{}", rpc.parent_service().full_name(), rpc.name());
        Ok(Self { method, template, body, response_body, rpc: rpc.clone(), grpc_path, operation_id })
    }

    /// Whether `field_path` (proto names) is bound by a path variable.
    pub(crate) fn bound_by_path(&self, field_path: &[String]) -> bool {
        self.template.variables().iter().any(|v| v.field_path == field_path)
    }
}

/// The leaf field at `path` (proto field names) through singular message
/// fields of `message`.
pub(crate) fn resolve(message: &MessageDescriptor, path: &[String]) -> Result<FieldDescriptor, String> {
    let mut current = message.clone();
    let mut leaf = None;
    for (i, name) in path.iter().enumerate() {
        let field =
            current.get_field_by_name(name).ok_or_else(|| format!("{} has no field {name:?}", current.full_name()))?;
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() => current = m,
                _ => return Err(format!("{} is not a singular message field", path[..=i].join("."))),
            }
        }
        leaf = Some(field);
    }
    leaf.ok_or_else(|| "empty field path".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::build(&Descriptors::load().expect("descriptors")).expect("routes")
    }

    #[test]
    fn every_annotated_rpc_of_the_contract_has_a_route() {
        let table = table();
        let descriptors = Descriptors::load().expect("descriptors");
        for service in descriptors.pool().services().filter(|s| s.package_name() == "kar.v1") {
            for rpc in service.methods() {
                let bound = table.routes().iter().any(|r| r.rpc.full_name() == rpc.full_name());
                assert_eq!(bound, !rpc.is_client_streaming(), "{}", rpc.full_name());
            }
        }
    }

    #[test]
    fn lookups_pick_the_route_and_capture_the_variables() {
        let table = table();
        let Lookup::Found(route, captures) = table.find(&http::Method::GET, "/kar/v1/actor/A/1/state/k/s") else {
            panic!("no route");
        };
        assert_eq!(route.grpc_path, "/kar.v1.StateService/Get");
        let names: Vec<_> = captures.iter().map(|(v, s)| (v.name(), s.as_str())).collect();
        assert_eq!(
            names,
            [("actor.type".into(), "A"), ("actor.id".into(), "1"), ("key".into(), "k"), ("subkey".into(), "s")]
        );
        assert!(matches!(table.find(&http::Method::GET, "/kar/v1/nothing"), Lookup::NotFound));
        assert!(matches!(
            table.find(&http::Method::PATCH, "/kar/v1/actor/A/1/state"),
            Lookup::MethodNotAllowed(m) if m.len() == 3
        ));
    }
}
