"""Role-based access: members read, admins configure and send, owners manage keys and people."""

from rest_framework import permissions

from .choices import Role, role_at_least


class RolePermission(permissions.BasePermission):
    """Reads need `view.read_role`, writes `view.write_role` (member and admin by default).

    Views that need no key (registration, login, health) set `permission_classes = []`.
    """

    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if principal is None or not getattr(principal, "is_authenticated", False):
            return False
        return role_at_least(principal.role, self.required_role(request.method, view))

    @staticmethod
    def required_role(method: str, view) -> str:
        """The lowest role that may call `view` with this HTTP method."""
        if method in permissions.SAFE_METHODS:
            return getattr(view, "read_role", Role.MEMBER)
        return getattr(view, "write_role", Role.ADMIN)
