package cloud

import (
	"strconv"
	"strings"
)

// Paths of the resource tree. Names are validated before they are used here.

// SubscriptionPath is the path of a subscription.
func SubscriptionPath(sub string) string { return "/subscriptions/" + sub }

// AccountPath is the path of an account.
func AccountPath(sub, acct string) string { return SubscriptionPath(sub) + "/accounts/" + acct }

// WorkspacePath is the path of a workspace.
func WorkspacePath(sub, acct, ws string) string { return AccountPath(sub, acct) + "/workspaces/" + ws }

// ProjectPath is the path of a project.
func ProjectPath(sub, acct, ws, proj string) string {
	return WorkspacePath(sub, acct, ws) + "/projects/" + proj
}

// ModelPath is the path of one model version; ModelVersionsPath the
// collection of a model name's versions.
func ModelPath(sub, acct, name string, v int) string {
	return ModelVersionsPath(sub, acct, name) + "/" + strconv.Itoa(v)
}

// ModelVersionsPath is the collection of a model name's versions.
func ModelVersionsPath(sub, acct, name string) string {
	return AccountPath(sub, acct) + "/models/" + name + "/versions"
}

// ManifestPath is the path of one manifest version.
func ManifestPath(sub, acct, name string, v int) string {
	return ManifestVersionsPath(sub, acct, name) + "/" + strconv.Itoa(v)
}

// ManifestVersionsPath is the collection of a manifest name's versions.
func ManifestVersionsPath(sub, acct, name string) string {
	return AccountPath(sub, acct) + "/manifests/" + name + "/versions"
}

// OperationPath is the path of an operation.
func OperationPath(sub, acct, id string) string { return AccountPath(sub, acct) + "/operations/" + id }

// blobRef is the reference target that keeps a blob alive.
func blobRef(digest string) string { return "blob:" + digest }

// isAncestorOrSelf reports whether scope is path or one of its ancestors.
func isAncestorOrSelf(scope, path string) bool {
	return scope == path || strings.HasPrefix(path, scope+"/")
}

// validScope reports whether path names a subscription, account or
// workspace (the scopes roles are granted on).
func validScope(path string) bool {
	s := strings.Split(strings.TrimPrefix(path, "/"), "/")
	switch len(s) {
	case 2:
		return s[0] == "subscriptions"
	case 4:
		return s[0] == "subscriptions" && s[2] == "accounts"
	case 6:
		return s[0] == "subscriptions" && s[2] == "accounts" && s[4] == "workspaces"
	}
	return false
}
