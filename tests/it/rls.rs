//! The permission model, checked cell by cell against the real database.
//!
//! Every table and function in `public` is read from the catalog. For each table, every
//! column: SELECT of each row and column, INSERT of each template with each further column,
//! UPDATE of each column of each row, DELETE of each row with and without a column in the
//! WHERE clause; for each function, each call. Each cell runs as one actor (the real role,
//! `request.jwt.claims` set as PostgREST sets it) in a subtransaction that is rolled back,
//! and its outcome (allowed, denied, or accepted but set by the database) is compared with
//! [`MODEL`]. Whatever the model does not grant is expected denied, so a new table, column
//! or function fails this test until the model says who may use it. PERMISSIONS.md is the
//! model rendered (`CHATCTL_BLESS=1 cargo test rls` rewrites it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sqlx::PgConnection;

use crate::support::TestDb;

/// Who acts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Actor {
    Anon,
    Newcomer,
    Stranger,
    Guest,
    Member,
    Moderator,
    PrivateMember,
    DmMember,
    Admin,
    Owner,
    PartnerOwner,
    Bot,
    Deactivated,
    Service,
}
use Actor::*;

const ACTORS: [Actor; 14] = [
    Anon,
    Newcomer,
    Stranger,
    Guest,
    Member,
    Moderator,
    PrivateMember,
    DmMember,
    Admin,
    Owner,
    PartnerOwner,
    Bot,
    Deactivated,
    Service,
];

impl Actor {
    /// The column header in PERMISSIONS.md.
    fn short(self) -> &'static str {
        match self {
            Anon => "anon",
            Newcomer => "new",
            Stranger => "stranger",
            Guest => "guest",
            Member => "member",
            Moderator => "mod",
            PrivateMember => "private",
            DmMember => "dm",
            Admin => "admin",
            Owner => "owner",
            PartnerOwner => "partner",
            Bot => "bot",
            Deactivated => "off",
            Service => "service",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Anon => "not signed in (the `anon` key)",
            Newcomer => "signed up, no profile yet",
            Stranger => "signed up, with a profile, in no workspace",
            Guest => "a guest of the home workspace, member of #general only",
            Member => "a member of the home workspace: #general, #shared, and a DM with `dm`",
            Moderator => {
                "a member of the home workspace who moderates #general, #private and #shared and owns #lobby"
            }
            PrivateMember => "a member of the home workspace and of the private channel #private",
            DmMember => "a member of the home workspace in a DM with `member`",
            Admin => "an admin of the home workspace (in #general)",
            Owner => "the owner of the home workspace (in #general)",
            PartnerOwner => {
                "the owner of the partner workspace, which #shared is shared with (a member of #shared)"
            }
            Bot => "a bot account, member of the home workspace and of #general",
            Deactivated => {
                "a member of the home workspace and of #general, deactivated (`users deactivate`): reaches what a stranger does"
            }
            Service => {
                "the service role (operators, chatctl; its key names no user): bypasses row level security"
            }
        }
    }

    /// The fixture user the actor is (`{me}`); the service role acts for `peer`.
    fn user(self) -> Option<&'static str> {
        Some(match self {
            Anon => return None,
            Newcomer => "newcomer",
            Stranger => "stranger",
            Guest => "guest",
            Member => "member",
            Moderator => "moderator",
            PrivateMember => "private_member",
            DmMember => "dm_member",
            Admin => "admin",
            Owner => "owner",
            PartnerOwner => "partner_owner",
            Bot => "bot",
            Deactivated => "deactivated",
            Service => "peer",
        })
    }

    fn role(self) -> &'static str {
        match self {
            Anon => "anon",
            Service => "service_role",
            _ => "authenticated",
        }
    }
}

/// Every signed-in actor with a profile.
const PROFILED: &[Actor] = &[
    Stranger,
    Guest,
    Member,
    Moderator,
    PrivateMember,
    DmMember,
    Admin,
    Owner,
    PartnerOwner,
    Bot,
];
/// The home workspace's people, guest included.
const HOME_ALL: &[Actor] = &[
    Guest,
    Member,
    Moderator,
    PrivateMember,
    DmMember,
    Admin,
    Owner,
    Bot,
];
/// The home workspace's people but the guest.
const HOME: &[Actor] = &[
    Member,
    Moderator,
    PrivateMember,
    DmMember,
    Admin,
    Owner,
    Bot,
];
const HOME_AND_PARTNER: &[Actor] = &[
    Member,
    Moderator,
    PrivateMember,
    DmMember,
    Admin,
    Owner,
    PartnerOwner,
    Bot,
];
/// Who sees `member` (a profile, a status): their workspace, and the partner who shares
/// #shared with them.
const SEE_MEMBER: &[Actor] = &[
    Guest,
    Member,
    Moderator,
    PrivateMember,
    DmMember,
    Admin,
    Owner,
    PartnerOwner,
    Bot,
];
const ADMINS: &[Actor] = &[Admin, Owner];
const PRIVATE: &[Actor] = &[PrivateMember, Moderator];
const DM: &[Actor] = &[Member, DmMember];
const NOBODY: &[Actor] = &[];

/// Whether `actor` is among `who`. A deactivated person may do exactly what a stranger
/// may: their memberships reach nothing.
fn may(who: &[Actor], actor: Actor) -> bool {
    who.contains(&actor) || (actor == Deactivated && who.contains(&Stranger))
}

/// What a cell came to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// Done, with the values sent.
    Allowed,
    /// Done, but the database set the value itself.
    Overridden,
    /// Refused (privilege, policy, invariant) or no effect.
    Denied,
}

impl Outcome {
    fn symbol(self) -> &'static str {
        match self {
            Outcome::Allowed => "✓",
            Outcome::Overridden => "~",
            Outcome::Denied => "·",
        }
    }
}

/// Whose writes of a column the database overrides.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Clients,
    Everyone,
}

/// A named row: its description and primary key values.
struct Row {
    name: &'static str,
    what: &'static str,
    key: &'static [(&'static str, &'static str)],
    readers: &'static [Actor],
}

/// An INSERT: the values of its base row, who may insert it, how to find it afterwards.
struct Insert {
    what: &'static str,
    values: &'static [(&'static str, &'static str)],
    /// Run first, as the table owner (to clear a row the insert would collide with).
    prepare: &'static str,
    who: &'static [Actor],
    /// Further columns some of them may send, beyond the table's `client_insert`.
    extra: &'static [(&'static str, &'static [Actor])],
    /// The service role's insert is refused (an invariant holds for it too).
    service_denied: bool,
}

/// Who may change these columns of this row.
struct Update {
    row: &'static str,
    columns: &'static [&'static str],
    who: &'static [Actor],
}

/// Who may delete this row; `unqualified`: who deletes it with `delete from t` (no column
/// in the WHERE clause), when that differs.
struct Delete {
    row: &'static str,
    who: &'static [Actor],
    unqualified: Option<&'static [Actor]>,
}

/// What the service role may not do (the database refuses it too), as `(op, row, column)`
/// with `*` for any: op is `insert`, `update`, `delete` or `delete-all`.
type ServiceDenied = &'static [(&'static str, &'static str, &'static str)];

struct Table {
    name: &'static str,
    /// Every column, in the catalog's order.
    columns: &'static [&'static str],
    /// Columns the API roles may not read.
    hidden: &'static [&'static str],
    rows: &'static [Row],
    inserts: &'static [Insert],
    /// Columns an API role may send on insert, beyond a template's own.
    client_insert: &'static [&'static str],
    /// Columns whose value the database sets on insert / on update, for whom.
    set_on_insert: &'static [(&'static str, Who)],
    set_on_update: &'static [(&'static str, Who)],
    updates: &'static [Update],
    deletes: &'static [Delete],
    /// Listings (`select … where COND`, as Storage lists a folder): what, the condition,
    /// and who sees rows of it.
    lists: &'static [(&'static str, &'static str, &'static [Actor])],
    service_denied: ServiceDenied,
}

/// A function in `public` (an RPC): each call, and who gets rows from it.
struct Function {
    name: &'static str,
    calls: &'static [(&'static str, &'static str, &'static [Actor])],
}

const fn row(
    name: &'static str,
    what: &'static str,
    key: &'static [(&'static str, &'static str)],
    readers: &'static [Actor],
) -> Row {
    Row {
        name,
        what,
        key,
        readers,
    }
}

const fn insert(
    what: &'static str,
    values: &'static [(&'static str, &'static str)],
    who: &'static [Actor],
) -> Insert {
    Insert {
        what,
        values,
        prepare: "",
        who,
        extra: &[],
        service_denied: false,
    }
}

const fn update(
    row: &'static str,
    columns: &'static [&'static str],
    who: &'static [Actor],
) -> Update {
    Update { row, columns, who }
}

const fn delete(row: &'static str, who: &'static [Actor]) -> Delete {
    Delete {
        row,
        who,
        unqualified: None,
    }
}

const PROFILE: &[&str] = &["username", "name", "avatar_url"];
const MESSAGE_EDIT: &[&str] = &["message", "is_deleted", "modified_at"];
const CHANNEL_EDIT: &[&str] = &["name", "topic", "description", "purpose"];
const CHANNEL_ADMIN: &[&str] = &[
    "name",
    "topic",
    "description",
    "purpose",
    "kind",
    "is_private",
    "archived_at",
];
/// What an owner or admin who is not a member changes: making a channel private would
/// hide it from them, and an update may not leave a row its writer cannot read.
const CHANNEL_ARCHIVE: &[&str] = &["name", "topic", "description", "purpose", "archived_at"];
const MEMBER_SETTINGS: &[&str] = &["last_read_at", "notification_level", "muted"];
/// What the uploader may change of their object (its path within their folder, its metadata).
const STORAGE_OBJECT_EDIT: &[&str] = &[
    "id",
    "name",
    "created_at",
    "updated_at",
    "last_accessed_at",
    "metadata",
    "version",
    "user_metadata",
];
const STATUS: &[&str] = &[
    "presence",
    "status_text",
    "status_emoji",
    "status_expires_at",
];

/// The permission model: who may do what. Anything not granted here is denied.
const MODEL: &[Table] = &[
    Table {
        name: "users",
        columns: &[
            "id",
            "username",
            "name",
            "email",
            "avatar_url",
            "is_bot",
            "external_source",
            "external_id",
            "created_at",
            "updated_at",
            "deactivated_at",
            "last_login",
        ],
        hidden: &["email", "external_source", "external_id"],
        rows: &[
            row("self", "their own profile", &[("id", "{me}")], PROFILED),
            row(
                "coworker",
                "`member`'s profile",
                &[("id", "{member}")],
                SEE_MEMBER,
            ),
            row(
                "partner",
                "`partner`'s profile (another workspace, shares #shared)",
                &[("id", "{partner_owner}")],
                &[Member, Moderator, PartnerOwner],
            ),
            row(
                "outsider",
                "a profile of an unrelated workspace",
                &[("id", "{outsider}")],
                NOBODY,
            ),
        ],
        inserts: &[
            Insert {
                what: "their own profile (a second one: refused by the key, after the policy)",
                values: &[
                    ("id", "{me}"),
                    ("username", "'fresh-profile'"),
                    ("name", "'Fresh'"),
                ],
                prepare: "",
                who: &[Newcomer],
                extra: &[],
                service_denied: true,
            },
            Insert {
                what: "a profile for another account (one that has none)",
                values: &[
                    ("id", "{spare_account}"),
                    ("username", "'not-mine'"),
                    ("name", "'Not mine'"),
                ],
                prepare: "",
                who: NOBODY,
                extra: &[],
                service_denied: false,
            },
        ],
        client_insert: &["avatar_url"],
        set_on_insert: &[("email", Who::Everyone), ("last_login", Who::Everyone)],
        set_on_update: &[
            ("email", Who::Everyone),
            ("updated_at", Who::Everyone),
            ("last_login", Who::Everyone),
        ],
        updates: &[
            update("self", PROFILE, PROFILED),
            update("coworker", PROFILE, &[Member]),
            update("partner", PROFILE, &[PartnerOwner]),
        ],
        deletes: &[],
        // Their messages keep them (chat.user_id is `on delete restrict`); their auth user
        // owns the id.
        lists: &[],
        service_denied: &[
            ("update", "*", "id"),
            ("delete", "coworker", "*"),
            ("delete", "partner", "*"),
            ("delete", "outsider", "*"),
            ("delete-all", "*", "*"),
        ],
    },
    Table {
        name: "workspaces",
        columns: &[
            "id",
            "slug",
            "name",
            "channel_id",
            "created_by",
            "created_at",
            "updated_at",
        ],
        hidden: &[],
        rows: &[
            row("home", "the home workspace", &[("id", "{home}")], HOME_ALL),
            row(
                "partner",
                "the partner workspace",
                &[("id", "{partner}")],
                &[PartnerOwner],
            ),
            row(
                "other",
                "an unrelated workspace",
                &[("id", "{other}")],
                NOBODY,
            ),
        ],
        inserts: &[insert(
            "a workspace",
            &[("slug", "'new-space'"), ("name", "'New'")],
            NOBODY,
        )],
        client_insert: &[],
        set_on_insert: &[],
        set_on_update: &[("updated_at", Who::Everyone)],
        updates: &[
            update("home", &["name", "channel_id"], ADMINS),
            update("partner", &["name", "channel_id"], &[PartnerOwner]),
        ],
        deletes: &[],
        // The default channel is one of the workspace's own (a new one has none).
        lists: &[],
        service_denied: &[
            ("insert", "a workspace", "channel_id"),
            ("update", "*", "id"),
        ],
    },
    Table {
        name: "workspace_members",
        columns: &["workspace_id", "user_id", "role", "joined_at"],
        hidden: &[],
        rows: &[
            row(
                "member",
                "`member`'s membership of home",
                &[("workspace_id", "{home}"), ("user_id", "{member}")],
                HOME_ALL,
            ),
            row(
                "owner",
                "the home owner's membership (the only owner)",
                &[("workspace_id", "{home}"), ("user_id", "{owner}")],
                HOME_ALL,
            ),
            row(
                "self",
                "their own membership of home",
                &[("workspace_id", "{home}"), ("user_id", "{me}")],
                HOME_ALL,
            ),
            row(
                "partner",
                "the partner owner's membership of partner",
                &[
                    ("workspace_id", "{partner}"),
                    ("user_id", "{partner_owner}"),
                ],
                &[PartnerOwner],
            ),
        ],
        inserts: &[
            insert(
                "`stranger` into home as member",
                &[
                    ("workspace_id", "{home}"),
                    ("user_id", "{stranger}"),
                    ("role", "'member'"),
                ],
                ADMINS,
            ),
            insert(
                "`stranger` into home as admin",
                &[
                    ("workspace_id", "{home}"),
                    ("user_id", "{stranger}"),
                    ("role", "'admin'"),
                ],
                ADMINS,
            ),
            insert(
                "`stranger` into home as owner",
                &[
                    ("workspace_id", "{home}"),
                    ("user_id", "{stranger}"),
                    ("role", "'owner'"),
                ],
                &[Owner],
            ),
            insert(
                "`stranger` into partner",
                &[
                    ("workspace_id", "{partner}"),
                    ("user_id", "{stranger}"),
                    ("role", "'member'"),
                ],
                &[PartnerOwner],
            ),
        ],
        client_insert: &[],
        set_on_insert: &[],
        set_on_update: &[],
        updates: &[
            update("member", &["role"], ADMINS),
            update("self", &["role"], &[Admin]),
        ],
        deletes: &[
            Delete {
                row: "member",
                who: &[Member, Admin, Owner],
                // The owner's `delete from workspace_members` takes their own row too: refused.
                unqualified: Some(&[Member, Admin]),
            },
            Delete {
                row: "self",
                who: &[
                    Guest,
                    Member,
                    Moderator,
                    PrivateMember,
                    DmMember,
                    Admin,
                    Bot,
                ],
                unqualified: None,
            },
        ],
        // A workspace keeps its owner, whoever asks.
        lists: &[],
        service_denied: &[
            ("update", "owner", "role"),
            ("update", "owner", "workspace_id"),
            ("update", "partner", "role"),
            ("update", "partner", "workspace_id"),
            ("delete", "owner", "*"),
            ("delete", "partner", "*"),
            ("delete-all", "*", "*"),
        ],
    },
    Table {
        name: "channels",
        columns: &[
            "id",
            "workspace_id",
            "name",
            "kind",
            "topic",
            "description",
            "purpose",
            "external_source",
            "external_id",
            "dm_key",
            "archived_at",
            "created_by",
            "created_at",
            "updated_at",
            "is_private",
        ],
        hidden: &[],
        rows: &[
            row(
                "general",
                "#general (public)",
                &[("id", "{general}")],
                HOME_ALL,
            ),
            row(
                "lobby",
                "#lobby (public, `mod` its only member)",
                &[("id", "{lobby}")],
                HOME,
            ),
            row("private", "#private", &[("id", "{private}")], PRIVATE),
            row("dm", "the DM of `member` and `dm`", &[("id", "{dm}")], DM),
            row(
                "shared",
                "#shared (public, shared with partner)",
                &[("id", "{shared}")],
                HOME_AND_PARTNER,
            ),
            row(
                "elsewhere",
                "a channel of an unrelated workspace",
                &[("id", "{elsewhere}")],
                NOBODY,
            ),
        ],
        inserts: &[
            insert(
                "a public channel in home",
                &[
                    ("workspace_id", "{home}"),
                    ("name", "'fresh'"),
                    ("kind", "'public'"),
                ],
                HOME,
            ),
            insert(
                "a private channel in home",
                &[
                    ("workspace_id", "{home}"),
                    ("name", "'fresh'"),
                    ("kind", "'private'"),
                ],
                HOME,
            ),
            insert(
                "a channel in partner",
                &[
                    ("workspace_id", "{partner}"),
                    ("name", "'fresh'"),
                    ("kind", "'public'"),
                ],
                &[PartnerOwner],
            ),
        ],
        client_insert: &["topic", "description", "purpose", "is_private"],
        set_on_insert: &[],
        set_on_update: &[("archived_at", Who::Clients), ("updated_at", Who::Everyone)],
        updates: &[
            update("general", CHANNEL_EDIT, &[Moderator]),
            update("general", CHANNEL_ADMIN, ADMINS),
            update("lobby", CHANNEL_EDIT, &[Moderator]),
            update("lobby", CHANNEL_ARCHIVE, ADMINS),
            update("private", CHANNEL_EDIT, &[Moderator]),
            update("shared", CHANNEL_EDIT, &[Moderator]),
            update("shared", CHANNEL_ARCHIVE, ADMINS),
        ],
        deletes: &[
            delete("general", ADMINS),
            delete("lobby", ADMINS),
            delete("shared", ADMINS),
        ],
        // A channel stays in its workspace; a DM stays a DM of the same people (and has no
        // name); ids are referenced by every message.
        lists: &[],
        service_denied: &[
            ("update", "*", "id"),
            ("update", "*", "workspace_id"),
            ("update", "dm", "kind"),
            ("update", "dm", "is_private"),
            ("update", "dm", "name"),
            ("update", "dm", "dm_key"),
        ],
    },
    Table {
        name: "members",
        columns: &[
            "channel_id",
            "user_id",
            "role",
            "created_at",
            "last_read_at",
            "notification_level",
            "muted",
            "id",
        ],
        hidden: &[],
        rows: &[
            row(
                "general",
                "`member` in #general",
                &[("channel_id", "{general}"), ("user_id", "{member}")],
                HOME_ALL,
            ),
            row(
                "private",
                "`private` in #private",
                &[("channel_id", "{private}"), ("user_id", "{private_member}")],
                PRIVATE,
            ),
            row(
                "dm",
                "`dm` in the DM",
                &[("channel_id", "{dm}"), ("user_id", "{dm_member}")],
                DM,
            ),
            row(
                "shared",
                "`partner` in #shared",
                &[("channel_id", "{shared}"), ("user_id", "{partner_owner}")],
                HOME_AND_PARTNER,
            ),
            row(
                "self",
                "their own membership of #general",
                &[("channel_id", "{general}"), ("user_id", "{me}")],
                HOME_ALL,
            ),
        ],
        inserts: &[
            Insert {
                what: "themselves into #lobby",
                values: &[("channel_id", "{lobby}"), ("user_id", "{me}")],
                prepare: "",
                who: &[PrivateMember, Member, DmMember, Admin, Owner, Bot],
                extra: &[("role", ADMINS)],
                service_denied: false,
            },
            insert(
                "themselves into #private",
                &[("channel_id", "{private}"), ("user_id", "{me}")],
                NOBODY,
            ),
            Insert {
                what: "themselves into #shared",
                values: &[("channel_id", "{shared}"), ("user_id", "{me}")],
                prepare: "",
                who: &[PrivateMember, DmMember, Admin, Owner, Bot],
                extra: &[("role", ADMINS)],
                service_denied: false,
            },
            Insert {
                what: "`peer` into #lobby",
                values: &[("channel_id", "{lobby}"), ("user_id", "{peer}")],
                prepare: "",
                who: &[Moderator, Admin, Owner],
                extra: &[("role", &[Moderator, Admin, Owner])],
                service_denied: false,
            },
            insert(
                "`peer` into #lobby as its owner",
                &[
                    ("channel_id", "{lobby}"),
                    ("user_id", "{peer}"),
                    ("role", "'owner'"),
                ],
                NOBODY,
            ),
            Insert {
                what: "`peer` into #private",
                values: &[("channel_id", "{private}"), ("user_id", "{peer}")],
                prepare: "",
                who: &[Moderator],
                extra: &[("role", &[Moderator])],
                service_denied: false,
            },
            Insert {
                what: "a partner-workspace person into #shared",
                values: &[("channel_id", "{shared}"), ("user_id", "{partner_peer}")],
                prepare: "",
                who: &[Moderator, Admin, Owner],
                extra: &[("role", &[Moderator, Admin, Owner])],
                service_denied: false,
            },
            Insert {
                what: "a partner-workspace person into #lobby (not shared)",
                values: &[("channel_id", "{lobby}"), ("user_id", "{partner_peer}")],
                prepare: "",
                who: NOBODY,
                extra: &[],
                service_denied: true,
            },
            Insert {
                what: "`stranger` (no workspace) into #general",
                values: &[("channel_id", "{general}"), ("user_id", "{stranger}")],
                prepare: "",
                who: NOBODY,
                extra: &[],
                service_denied: true,
            },
            Insert {
                what: "`peer` into the DM (a new set of people is a new DM)",
                values: &[("channel_id", "{dm}"), ("user_id", "{peer}")],
                prepare: "",
                who: NOBODY,
                extra: &[],
                service_denied: true,
            },
        ],
        client_insert: &[],
        set_on_insert: &[],
        set_on_update: &[("last_read_at", Who::Clients)],
        updates: &[
            update("self", MEMBER_SETTINGS, HOME_ALL),
            update("general", MEMBER_SETTINGS, &[Member]),
            update("private", MEMBER_SETTINGS, &[PrivateMember]),
            update("dm", MEMBER_SETTINGS, &[DmMember]),
            update("shared", MEMBER_SETTINGS, &[PartnerOwner]),
        ],
        deletes: &[
            delete("general", &[Member, Moderator, Admin, Owner]),
            delete("private", &[PrivateMember, Moderator]),
            delete("shared", &[Moderator, Admin, Owner, PartnerOwner]),
            delete("self", HOME_ALL),
        ],
        // A DM's people are its key's, with no moderating role; members come from the
        // channel's workspaces.
        lists: &[],
        service_denied: &[
            ("insert", "themselves into the DM", "*"),
            ("update", "dm", "role"),
            ("update", "dm", "user_id"),
            ("update", "general", "user_id"),
            ("update", "self", "user_id"),
            ("update", "private", "user_id"),
            ("update", "shared", "user_id"),
            ("update", "shared", "channel_id"),
        ],
    },
    Table {
        name: "shared_channels",
        columns: &[
            "channel_id",
            "workspace_id",
            "shared_by",
            "created_at",
            "target_workspace_id",
            "origin_workspace_id",
            "name",
            "topic",
            "is_private",
        ],
        hidden: &[],
        rows: &[row(
            "shared",
            "#shared's sharing with partner",
            &[("channel_id", "{shared}"), ("workspace_id", "{partner}")],
            HOME_AND_PARTNER,
        )],
        inserts: &[
            insert(
                "#lobby into partner",
                &[("channel_id", "{lobby}"), ("workspace_id", "{partner}")],
                ADMINS,
            ),
            insert(
                "#private into partner",
                &[("channel_id", "{private}"), ("workspace_id", "{partner}")],
                NOBODY,
            ),
            Insert {
                what: "the DM into partner",
                values: &[("channel_id", "{dm}"), ("workspace_id", "{partner}")],
                prepare: "",
                who: NOBODY,
                extra: &[],
                service_denied: true,
            },
        ],
        client_insert: &["target_workspace_id"],
        // The channel's own: whatever the service role sends, the channel's values stay.
        set_on_insert: &[
            ("origin_workspace_id", Who::Everyone),
            ("name", Who::Everyone),
            ("topic", Who::Everyone),
            ("is_private", Who::Everyone),
        ],
        set_on_update: &[
            ("origin_workspace_id", Who::Everyone),
            ("name", Who::Everyone),
            ("topic", Who::Everyone),
            ("is_private", Who::Everyone),
        ],
        updates: &[],
        deletes: &[delete("shared", &[Admin, Owner, PartnerOwner])],
        lists: &[],
        service_denied: &[],
    },
    Table {
        name: "chat",
        columns: &[
            "id",
            "channel_id",
            "user_id",
            "parent_id",
            "message",
            "total_replies",
            "last_reply_at",
            "is_deleted",
            "created_at",
            "updated_at",
            "modified_at",
            "search",
        ],
        hidden: &[],
        rows: &[
            row(
                "general",
                "`member`'s message in #general",
                &[("id", "{general_msg}")],
                HOME_ALL,
            ),
            row(
                "reply",
                "`dm`'s reply to it",
                &[("id", "{general_reply}")],
                HOME_ALL,
            ),
            row(
                "lobby",
                "`mod`'s message in #lobby",
                &[("id", "{lobby_msg}")],
                HOME,
            ),
            row(
                "private",
                "`private`'s message in #private",
                &[("id", "{private_msg}")],
                PRIVATE,
            ),
            row("dm", "`dm`'s message in the DM", &[("id", "{dm_msg}")], DM),
            row(
                "shared",
                "`partner`'s message in #shared",
                &[("id", "{shared_msg}")],
                HOME_AND_PARTNER,
            ),
            row(
                "elsewhere",
                "a message of an unrelated workspace",
                &[("id", "{elsewhere_msg}")],
                NOBODY,
            ),
        ],
        inserts: &[
            insert(
                "as themselves into #general",
                &[
                    ("channel_id", "{general}"),
                    ("user_id", "{me}"),
                    ("message", r#"'{"text":"new"}'"#),
                ],
                HOME_ALL,
            ),
            insert(
                "as themselves into #lobby",
                &[
                    ("channel_id", "{lobby}"),
                    ("user_id", "{me}"),
                    ("message", r#"'{"text":"new"}'"#),
                ],
                &[Moderator],
            ),
            insert(
                "as themselves into #private",
                &[
                    ("channel_id", "{private}"),
                    ("user_id", "{me}"),
                    ("message", r#"'{"text":"new"}'"#),
                ],
                PRIVATE,
            ),
            insert(
                "as themselves into the DM",
                &[
                    ("channel_id", "{dm}"),
                    ("user_id", "{me}"),
                    ("message", r#"'{"text":"new"}'"#),
                ],
                DM,
            ),
            insert(
                "as themselves into #shared",
                &[
                    ("channel_id", "{shared}"),
                    ("user_id", "{me}"),
                    ("message", r#"'{"text":"new"}'"#),
                ],
                &[Member, Moderator, PartnerOwner],
            ),
            insert(
                "as `member` into #general",
                &[
                    ("channel_id", "{general}"),
                    ("user_id", "{member}"),
                    ("message", r#"'{"text":"new"}'"#),
                ],
                &[Member],
            ),
        ],
        client_insert: &["parent_id"],
        set_on_insert: &[],
        set_on_update: &[("updated_at", Who::Everyone), ("modified_at", Who::Clients)],
        updates: &[
            update("general", MESSAGE_EDIT, &[Member]),
            update("reply", MESSAGE_EDIT, &[DmMember]),
            update("lobby", MESSAGE_EDIT, &[Moderator]),
            update("private", MESSAGE_EDIT, &[PrivateMember]),
            update("dm", MESSAGE_EDIT, &[DmMember]),
            update("shared", MESSAGE_EDIT, &[PartnerOwner]),
        ],
        deletes: &[
            // `member` soft-deletes it: it has a reply, which a delete would take with it.
            delete("general", &[Moderator, Admin, Owner]),
            delete("reply", &[DmMember, Moderator, Admin, Owner]),
            delete("lobby", &[Moderator, Admin, Owner]),
            delete("private", PRIVATE),
            delete("dm", &[DmMember]),
            delete("shared", &[Moderator, Admin, Owner, PartnerOwner]),
        ],
        // Messages referenced by replies, reactions, files, receipts and mentions keep
        // their id; a reply's parent is in its channel.
        lists: &[],
        service_denied: &[
            ("update", "general", "id"),
            ("update", "private", "id"),
            ("update", "dm", "id"),
            ("update", "reply", "channel_id"),
        ],
    },
    Table {
        name: "emojis",
        columns: &["chat_id", "user_id", "emoji_uni_code", "created_at", "id"],
        hidden: &[],
        rows: &[
            row(
                "general",
                "`member`'s reaction in #general",
                &[
                    ("chat_id", "{general_msg}"),
                    ("user_id", "{member}"),
                    ("emoji_uni_code", "'👀'"),
                ],
                HOME_ALL,
            ),
            row(
                "private",
                "`private`'s reaction in #private",
                &[
                    ("chat_id", "{private_msg}"),
                    ("user_id", "{private_member}"),
                    ("emoji_uni_code", "'👀'"),
                ],
                PRIVATE,
            ),
            row(
                "dm",
                "`dm`'s reaction in the DM",
                &[
                    ("chat_id", "{dm_msg}"),
                    ("user_id", "{dm_member}"),
                    ("emoji_uni_code", "'👀'"),
                ],
                DM,
            ),
        ],
        inserts: &[
            insert(
                "their own, in #general",
                &[
                    ("chat_id", "{general_msg}"),
                    ("user_id", "{me}"),
                    ("emoji_uni_code", "'🎉'"),
                ],
                HOME_ALL,
            ),
            insert(
                "their own, in #lobby",
                &[
                    ("chat_id", "{lobby_msg}"),
                    ("user_id", "{me}"),
                    ("emoji_uni_code", "'🎉'"),
                ],
                &[Moderator],
            ),
            insert(
                "their own, in #private",
                &[
                    ("chat_id", "{private_msg}"),
                    ("user_id", "{me}"),
                    ("emoji_uni_code", "'🎉'"),
                ],
                PRIVATE,
            ),
            insert(
                "their own, in the DM",
                &[
                    ("chat_id", "{dm_msg}"),
                    ("user_id", "{me}"),
                    ("emoji_uni_code", "'🎉'"),
                ],
                DM,
            ),
            insert(
                "as `member`, in #general",
                &[
                    ("chat_id", "{general_msg}"),
                    ("user_id", "{member}"),
                    ("emoji_uni_code", "'🎉'"),
                ],
                &[Member],
            ),
        ],
        client_insert: &[],
        set_on_insert: &[],
        set_on_update: &[],
        updates: &[],
        deletes: &[
            delete("general", &[Member]),
            delete("private", &[PrivateMember]),
            delete("dm", &[DmMember]),
        ],
        lists: &[],
        service_denied: &[],
    },
    Table {
        name: "attachments",
        columns: &[
            "id",
            "message_id",
            "bucket_id",
            "object_path",
            "name",
            "size_bytes",
            "mime_type",
            "created_at",
        ],
        hidden: &[],
        rows: &[
            row(
                "general",
                "a file on `member`'s message in #general",
                &[("id", "{general_file}")],
                HOME_ALL,
            ),
            row(
                "private",
                "a file in #private",
                &[("id", "{private_file}")],
                PRIVATE,
            ),
            row("dm", "a file in the DM", &[("id", "{dm_file}")], DM),
        ],
        inserts: &[
            insert(
                "on `member`'s message in #general",
                &[
                    ("message_id", "{general_msg}"),
                    ("bucket_id", "'files'"),
                    ("object_path", "'new/new.pdf'"),
                    ("name", "'new.pdf'"),
                    ("size_bytes", "10"),
                ],
                &[Member],
            ),
            insert(
                "on `private`'s message in #private",
                &[
                    ("message_id", "{private_msg}"),
                    ("bucket_id", "'files'"),
                    ("object_path", "'new/new.pdf'"),
                    ("name", "'new.pdf'"),
                    ("size_bytes", "10"),
                ],
                &[PrivateMember],
            ),
            insert(
                "on `dm`'s message in the DM",
                &[
                    ("message_id", "{dm_msg}"),
                    ("bucket_id", "'files'"),
                    ("object_path", "'new/new.pdf'"),
                    ("name", "'new.pdf'"),
                    ("size_bytes", "10"),
                ],
                &[DmMember],
            ),
        ],
        client_insert: &["mime_type"],
        set_on_insert: &[],
        set_on_update: &[],
        updates: &[],
        deletes: &[
            delete("general", &[Member, Moderator, Admin, Owner]),
            delete("private", PRIVATE),
            delete("dm", &[DmMember]),
        ],
        lists: &[],
        service_denied: &[],
    },
    Table {
        name: "read_receipts",
        columns: &["message_id", "user_id", "read_at"],
        hidden: &[],
        rows: &[
            row(
                "general",
                "`member`'s receipt in #general",
                &[("message_id", "{general_msg}"), ("user_id", "{member}")],
                HOME_ALL,
            ),
            row(
                "private",
                "`private`'s receipt in #private",
                &[
                    ("message_id", "{private_msg}"),
                    ("user_id", "{private_member}"),
                ],
                PRIVATE,
            ),
            row(
                "dm",
                "`dm`'s receipt in the DM",
                &[("message_id", "{dm_msg}"), ("user_id", "{dm_member}")],
                DM,
            ),
        ],
        inserts: &[
            insert(
                "their own, in #lobby",
                &[("message_id", "{lobby_msg}"), ("user_id", "{me}")],
                HOME,
            ),
            Insert {
                what: "their own, in #private",
                values: &[("message_id", "{private_msg}"), ("user_id", "{me}")],
                prepare: "delete from public.read_receipts where message_id = {private_msg} and user_id = {me}",
                who: PRIVATE,
                extra: &[],
                service_denied: false,
            },
            Insert {
                what: "their own, in the DM",
                values: &[("message_id", "{dm_msg}"), ("user_id", "{me}")],
                prepare: "delete from public.read_receipts where message_id = {dm_msg} and user_id = {me}",
                who: DM,
                extra: &[],
                service_denied: false,
            },
            insert(
                "as `member`, in #lobby",
                &[("message_id", "{lobby_msg}"), ("user_id", "{member}")],
                &[Member],
            ),
        ],
        client_insert: &[],
        set_on_insert: &[],
        set_on_update: &[("read_at", Who::Clients)],
        updates: &[
            update("general", &["read_at"], &[Member]),
            update("private", &["read_at"], &[PrivateMember]),
            update("dm", &["read_at"], &[DmMember]),
        ],
        deletes: &[
            delete("general", &[Member]),
            delete("private", &[PrivateMember]),
            delete("dm", &[DmMember]),
        ],
        lists: &[],
        service_denied: &[],
    },
    Table {
        name: "user_status",
        columns: &[
            "user_id",
            "presence",
            "status_text",
            "status_emoji",
            "status_expires_at",
            "last_seen_at",
            "updated_at",
        ],
        hidden: &[],
        rows: &[
            row(
                "member",
                "`member`'s status",
                &[("user_id", "{member}")],
                SEE_MEMBER,
            ),
            row(
                "partner",
                "`partner`'s status",
                &[("user_id", "{partner_owner}")],
                &[Member, Moderator, PartnerOwner],
            ),
            row(
                "outsider",
                "an unrelated person's status",
                &[("user_id", "{outsider}")],
                NOBODY,
            ),
        ],
        inserts: &[
            Insert {
                what: "their own",
                values: &[("user_id", "{me}"), ("presence", "'away'")],
                prepare: "delete from public.user_status where user_id = {me}",
                who: PROFILED,
                extra: &[],
                service_denied: false,
            },
            Insert {
                what: "`member`'s",
                values: &[("user_id", "{member}"), ("presence", "'away'")],
                prepare: "delete from public.user_status where user_id = {member}",
                who: &[Member],
                extra: &[],
                service_denied: false,
            },
        ],
        client_insert: &["status_text", "status_emoji", "status_expires_at"],
        set_on_insert: &[],
        set_on_update: &[("updated_at", Who::Everyone)],
        updates: &[
            update("member", STATUS, &[Member]),
            update("partner", STATUS, &[PartnerOwner]),
        ],
        deletes: &[
            delete("member", &[Member]),
            delete("partner", &[PartnerOwner]),
        ],
        lists: &[],
        service_denied: &[],
    },
    Table {
        name: "mentions",
        columns: &["message_id", "user_id", "channel_id", "created_at"],
        hidden: &[],
        rows: &[row(
            "private",
            "`private` mentioned in #general",
            &[
                ("message_id", "{general_msg}"),
                ("user_id", "{private_member}"),
            ],
            &[PrivateMember],
        )],
        inserts: &[insert(
            "a mention of themselves",
            &[
                ("message_id", "{lobby_msg}"),
                ("user_id", "{me}"),
                ("channel_id", "{lobby}"),
                ("created_at", "now()"),
            ],
            NOBODY,
        )],
        client_insert: &[],
        set_on_insert: &[],
        set_on_update: &[],
        updates: &[],
        deletes: &[],
        lists: &[],
        service_denied: &[],
    },
    Table {
        name: "user_activity",
        columns: &[
            "user_id",
            "channel_id",
            "slot",
            "messages",
            "threads_started",
            "replies",
            "reactions",
            "last_message_at",
        ],
        hidden: &[],
        rows: &[
            row(
                "general",
                "`member`'s activity in #general",
                &[("user_id", "{member}"), ("channel_id", "{general}")],
                HOME_ALL,
            ),
            row(
                "lobby",
                "`mod`'s activity in #lobby",
                &[("user_id", "{moderator}"), ("channel_id", "{lobby}")],
                HOME,
            ),
            row(
                "private",
                "`private`'s activity in #private",
                &[("user_id", "{private_member}"), ("channel_id", "{private}")],
                PRIVATE,
            ),
            row(
                "dm",
                "`dm`'s activity in the DM",
                &[("user_id", "{dm_member}"), ("channel_id", "{dm}")],
                DM,
            ),
            row(
                "shared",
                "`partner`'s activity in #shared",
                &[("user_id", "{partner_owner}"), ("channel_id", "{shared}")],
                HOME_AND_PARTNER,
            ),
            row(
                "elsewhere",
                "activity in an unrelated workspace",
                &[("user_id", "{outsider}"), ("channel_id", "{elsewhere}")],
                NOBODY,
            ),
        ],
        inserts: &[insert(
            "a count of their own in #lobby",
            &[
                ("user_id", "{me}"),
                ("channel_id", "{lobby}"),
                ("messages", "1000"),
            ],
            NOBODY,
        )],
        client_insert: &[],
        set_on_insert: &[],
        set_on_update: &[],
        updates: &[],
        deletes: &[],
        lists: &[],
        service_denied: &[],
    },
    // Storage (migration 0015): objects of chatctl's buckets under
    // `<workspace>/<channel>/<uploader>/<file>`, through the Storage API as the caller.
    Table {
        name: "storage.objects",
        columns: &[
            "id",
            "bucket_id",
            "name",
            "owner",
            "created_at",
            "updated_at",
            "last_accessed_at",
            "metadata",
            "path_tokens",
            "version",
            "owner_id",
            "user_metadata",
        ],
        hidden: &[],
        rows: &[
            row(
                "general",
                "`member`'s file in #general",
                &[("id", "{general_object}")],
                HOME_ALL,
            ),
            row(
                "private",
                "`private`'s file in #private",
                &[("id", "{private_object}")],
                PRIVATE,
            ),
            row("dm", "`dm`'s file in the DM", &[("id", "{dm_object}")], DM),
            row(
                "shared",
                "`partner`'s file in #shared",
                &[("id", "{shared_object}")],
                HOME_AND_PARTNER,
            ),
            row(
                "foreign",
                "a file laid out as #general's in a bucket chatctl does not own",
                &[("id", "{foreign_object}")],
                NOBODY,
            ),
            row(
                "misfiled",
                "a file of #general filed under the partner workspace",
                &[("id", "{misfiled_object}")],
                NOBODY,
            ),
        ],
        inserts: &[
            insert(
                "(upload) into their own folder of #general",
                &[
                    ("bucket_id", "'files'"),
                    (
                        "name",
                        "{home}::text || '/' || {general}::text || '/' || {me}::text || '/new.pdf'",
                    ),
                ],
                HOME_ALL,
            ),
            insert(
                "(upload) into `peer`'s folder of #general",
                &[
                    ("bucket_id", "'files'"),
                    (
                        "name",
                        "{home}::text || '/' || {general}::text || '/' || {peer}::text || '/new.pdf'",
                    ),
                ],
                NOBODY,
            ),
            insert(
                "(upload) into their own folder of #private",
                &[
                    ("bucket_id", "'files'"),
                    (
                        "name",
                        "{home}::text || '/' || {private}::text || '/' || {me}::text || '/new.pdf'",
                    ),
                ],
                PRIVATE,
            ),
            insert(
                "(upload) into their own folder of #general in a bucket chatctl does not own",
                &[
                    ("bucket_id", "'foreign'"),
                    (
                        "name",
                        "{home}::text || '/' || {general}::text || '/' || {me}::text || '/new.pdf'",
                    ),
                ],
                NOBODY,
            ),
            insert(
                "(upload) outside any channel's folder",
                &[
                    ("bucket_id", "'files'"),
                    ("name", "{me}::text || '/new.pdf'"),
                ],
                NOBODY,
            ),
        ],
        client_insert: &[
            "id",
            "created_at",
            "updated_at",
            "last_accessed_at",
            "metadata",
            "version",
            "user_metadata",
        ],
        set_on_insert: &[],
        set_on_update: &[],
        updates: &[
            update("general", STORAGE_OBJECT_EDIT, &[Member]),
            update("private", STORAGE_OBJECT_EDIT, &[PrivateMember]),
            update("dm", STORAGE_OBJECT_EDIT, &[DmMember]),
            update("shared", STORAGE_OBJECT_EDIT, &[PartnerOwner]),
        ],
        deletes: &[
            delete("general", &[Member, Moderator, Admin, Owner]),
            delete("private", &[PrivateMember, Moderator]),
            delete("dm", &[DmMember]),
            delete("shared", &[PartnerOwner, Moderator, Admin, Owner]),
        ],
        lists: &[
            (
                "#general's folder",
                "bucket_id = 'files' and name like {home}::text || '/' || {general}::text || '/%'",
                HOME_ALL,
            ),
            (
                "#private's folder",
                "bucket_id = 'files' and name like {home}::text || '/' || {private}::text || '/%'",
                PRIVATE,
            ),
            (
                "the DM's folder",
                "bucket_id = 'files' and name like {home}::text || '/' || {dm}::text || '/%'",
                DM,
            ),
            (
                "#shared's folder",
                "bucket_id = 'files' and name like {home}::text || '/' || {shared}::text || '/%'",
                HOME_AND_PARTNER,
            ),
            (
                "the bucket chatctl does not own",
                "bucket_id = 'foreign'",
                NOBODY,
            ),
            // Who reads some channel of home: its people, and the partner (#shared).
            (
                "the whole bucket `files`",
                "bucket_id = 'files'",
                SEE_MEMBER,
            ),
        ],
        service_denied: &[],
    },
    Table {
        name: "storage.buckets",
        columns: &[
            "id",
            "name",
            "owner",
            "created_at",
            "updated_at",
            "public",
            "avif_autodetection",
            "file_size_limit",
            "allowed_mime_types",
            "owner_id",
        ],
        hidden: &[],
        rows: &[row(
            "files",
            "chatctl's bucket `files`",
            &[("id", "'files'")],
            NOBODY,
        )],
        inserts: &[insert(
            "a bucket",
            &[("id", "'new-bucket'"), ("name", "'new-bucket'")],
            NOBODY,
        )],
        client_insert: &[],
        set_on_insert: &[],
        set_on_update: &[],
        updates: &[],
        deletes: &[],
        // Its objects refer to it.
        lists: &[],
        service_denied: &[
            ("update", "files", "id"),
            ("delete", "files", "*"),
            ("delete-all", "files", "*"),
        ],
    },
];

/// The functions in `public` the app calls (PostgREST RPC): who gets an answer.
const FUNCTIONS: &[Function] = &[
    Function {
        name: "unread_counts",
        calls: &[(
            "their unread count in #general",
            "select * from public.unread_counts() where channel_id = {general}",
            HOME_ALL,
        )],
    },
    Function {
        name: "user_emails",
        calls: &[
            (
                "their own email",
                "select * from public.user_emails(array[{me}]) where email is not null",
                PROFILED,
            ),
            (
                "`member`'s email (same workspace)",
                "select * from public.user_emails(array[{member}])",
                HOME_ALL,
            ),
            (
                "`partner`'s email (only a shared channel in common)",
                "select * from public.user_emails(array[{partner_owner}])",
                &[PartnerOwner],
            ),
        ],
    },
];

/// `(column, value)` pairs a cell writes.
type Assignments = Vec<(&'static str, &'static str)>;

/// The value a cell writes into `column` of `table`, as `(column, value)` assignments (a
/// pair of columns that must change together is two); `None` where no valid value exists.
/// `context` is the row or insert template.
fn value(table: &str, column: &str, context: &str) -> Option<Assignments> {
    let one = |v: &'static str| Some(vec![(leak(column), v)]);
    match (table, column) {
        // The row's own primary key: a fresh one.
        (_, "id") => one("'0e000000-0000-4000-8000-000000000001'"),
        (_, "external_source" | "external_id") => Some(vec![
            ("external_source", "'crm'"),
            ("external_id", "'crm-1'"),
        ]),
        (_, "search") => None, // generated
        ("users", "username") => one("'renamed'"),
        ("users", "name") => one("'Renamed'"),
        ("users", "email") => one("'forged@example.com'"),
        ("users", "avatar_url") => one("'https://example.com/a.png'"),
        ("users", "is_bot") => one("true"),
        ("workspaces", "slug") => one("'renamed-space'"),
        ("workspaces" | "channels", "name") => one("'renamed'"),
        ("workspaces", "channel_id") => match context {
            "home" => one("{lobby}"),
            "partner" => one("{partner_general}"),
            "other" => one("{elsewhere}"),
            _ => one("{general}"),
        },
        ("workspace_members", "workspace_id") => one("{other}"),
        ("workspace_members" | "members", "user_id") => one("{stranger}"),
        ("workspace_members", "role") => one("'admin'"),
        ("channels", "workspace_id") => one("{partner}"),
        ("channels", "kind") => match context {
            "private" => one("'public'"),
            "dm" => one("'group_dm'"),
            _ => one("'private'"),
        },
        // What the row's kind says otherwise (a change), and on insert what the template's
        // kind says (sending both, agreeing).
        ("channels", "is_private") => match context {
            "private" | "dm" | "a public channel in home" | "a channel in partner" => one("false"),
            _ => one("true"),
        },
        ("channels", "dm_key") => (context == "dm").then(|| vec![("dm_key", "'a,b'")]),
        ("channels", "topic" | "description") => one("'changed'"),
        ("channels", "purpose") => one("'project'"),
        ("members", "channel_id") => one("{lobby}"),
        ("members", "role") => one("'moderator'"),
        ("members", "notification_level") => one("'mentions'"),
        ("members", "muted") => one("true"),
        ("shared_channels", "channel_id") => one("{lobby}"),
        ("shared_channels", "target_workspace_id") => one("{partner}"),
        ("shared_channels", "origin_workspace_id") => one("{other}"),
        // Never the channel's own value.
        ("shared_channels", "is_private") => match context {
            c if c.contains("#private") => one("false"),
            _ => one("true"),
        },
        ("shared_channels", "name" | "topic") => one("'forged'"),
        ("shared_channels", "workspace_id") => one("{other}"),
        ("chat", "channel_id") => match context {
            "reply" => one("{lobby}"),
            _ => one("{shared}"),
        },
        ("chat", "parent_id") => match context {
            "reply" => one("null"),
            "general" | "lobby" | "private" | "dm" | "shared" | "elsewhere" => None,
            c if c.contains("#lobby") => one("{lobby_msg}"),
            c if c.contains("#private") => one("{private_msg}"),
            c if c.contains("the DM") => one("{dm_msg}"),
            c if c.contains("#shared") => one("{shared_msg}"),
            _ => one("{general_msg}"),
        },
        ("chat", "message") => one(r#"'{"text":"changed"}'"#),
        ("chat", "total_replies") => one("7"),
        ("chat", "is_deleted") => one("true"),
        ("read_receipts" | "attachments" | "mentions", "message_id") | ("emojis", "chat_id") => {
            one("{shared_msg}")
        }
        ("chat", "user_id") => one("{moderator}"),
        ("emojis" | "read_receipts" | "user_status" | "mentions", "user_id") => one("{owner}"),
        ("emojis", "emoji_uni_code") => one("'🔥'"),
        ("attachments", "bucket_id") => one("'other-bucket'"),
        ("attachments", "object_path") => one("'x/y.txt'"),
        ("attachments", "name") => one("'renamed.txt'"),
        ("attachments", "size_bytes") => one("42"),
        ("attachments", "mime_type") => one("'text/plain'"),
        ("storage.objects", "bucket_id") => one("'foreign'"),
        // Renamed within its folder (the uploader's).
        ("storage.objects", "name") => match context {
            "general" => one(
                "{home}::text || '/' || {general}::text || '/' || {member}::text || '/renamed.pdf'",
            ),
            "private" => one(
                "{home}::text || '/' || {private}::text || '/' || {private_member}::text || '/renamed.pdf'",
            ),
            "dm" => one(
                "{home}::text || '/' || {dm}::text || '/' || {dm_member}::text || '/renamed.pdf'",
            ),
            "shared" => one(
                "{home}::text || '/' || {shared}::text || '/' || {partner_owner}::text || '/renamed.pdf'",
            ),
            _ => one("'renamed.pdf'"),
        },
        ("storage.objects", "owner") => one("{outsider}"),
        ("storage.objects", "owner_id") => one("{outsider}::text"),
        ("storage.objects", "metadata" | "user_metadata") => one(r#"'{"size":1}'"#),
        ("storage.objects", "version") => one("'v2'"),
        ("storage.objects", "path_tokens") => None, // generated
        ("storage.buckets", "name") => one("'renamed'"),
        ("storage.buckets", "owner") => one("{member}"),
        ("storage.buckets", "owner_id") => one("{member}::text"),
        ("storage.buckets", "public" | "avif_autodetection") => one("true"),
        ("storage.buckets", "file_size_limit") => one("1"),
        ("storage.buckets", "allowed_mime_types") => one("array['image/png']"),
        ("user_status", "presence") => one("'dnd'"),
        ("user_status", "status_text") => one("'busy'"),
        ("user_status", "status_emoji") => one("'calendar'"),
        ("mentions", "channel_id") => one("{shared}"),
        ("user_activity", "user_id") => one("{stranger}"),
        ("user_activity", "channel_id") => one("{partner_general}"),
        ("user_activity", "slot") => one("7"),
        ("user_activity", "messages" | "threads_started" | "replies" | "reactions") => one("1000"),
        ("workspaces" | "channels" | "shared_channels", "created_by" | "shared_by") => {
            one("{member}")
        }
        // Timestamps: a forged one, far in the future.
        (_, _) => one("'2099-01-01 00:00:00+00'"),
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

impl Table {
    fn service_denied(&self, op: &str, context: &str, column: &str) -> bool {
        self.service_denied.iter().any(|(o, r, c)| {
            *o == op && (*r == "*" || *r == context) && (*c == "*" || *c == column)
        })
    }

    fn set_by_database(list: &[(&str, Who)], column: &str, actor: Actor) -> bool {
        list.iter()
            .any(|(c, who)| *c == column && (*who == Who::Everyone || actor != Service))
    }

    fn expect_read(&self, row: &Row, column: Option<&str>, actor: Actor) -> Outcome {
        let ok = actor == Service
            || (may(row.readers, actor) && column.is_none_or(|c| !self.hidden.contains(&c)));
        if ok {
            Outcome::Allowed
        } else {
            Outcome::Denied
        }
    }

    fn expect_insert(&self, ins: &Insert, column: Option<&str>, actor: Actor) -> Outcome {
        let base = if actor == Service {
            !ins.service_denied
        } else {
            may(ins.who, actor)
        };
        let Some(column) = column else {
            return if base {
                Outcome::Allowed
            } else {
                Outcome::Denied
            };
        };
        let may = if actor == Service {
            base && !self.service_denied("insert", ins.what, column)
        } else {
            base && (self.client_insert.contains(&column)
                || ins
                    .extra
                    .iter()
                    .any(|(c, who)| *c == column && may(who, actor)))
        };
        if !may {
            Outcome::Denied
        } else if Self::set_by_database(self.set_on_insert, column, actor) {
            Outcome::Overridden
        } else {
            Outcome::Allowed
        }
    }

    fn expect_update(&self, row: &Row, column: &str, actor: Actor) -> Outcome {
        let may = if actor == Service {
            !self.service_denied("update", row.name, column)
        } else {
            self.updates
                .iter()
                .any(|u| u.row == row.name && u.columns.contains(&column) && may(u.who, actor))
        };
        if !may {
            Outcome::Denied
        } else if Self::set_by_database(self.set_on_update, column, actor) {
            Outcome::Overridden
        } else {
            Outcome::Allowed
        }
    }

    fn expect_delete(&self, row: &Row, unqualified: bool, actor: Actor) -> Outcome {
        let may = if actor == Service {
            let op = if unqualified { "delete-all" } else { "delete" };
            let refused = self.service_denied(op, row.name, "*")
                || (unqualified && self.service_denied("delete", row.name, "*"));
            !refused
        } else {
            self.deletes.iter().any(|d| {
                d.row == row.name
                    && match (unqualified, d.unqualified) {
                        (true, Some(who)) => may(who, actor),
                        _ => may(d.who, actor),
                    }
            })
        };
        if may {
            Outcome::Allowed
        } else {
            Outcome::Denied
        }
    }
}

/// One cell: an operation, the SQL to run as the actor, and how to judge it.
struct Cell {
    table: &'static str,
    /// The line of PERMISSIONS.md it belongs to, and what exactly it tried.
    line: String,
    what: String,
    kind: Kind,
    sql: String,
    /// Run as the table owner before switching to the actor.
    prepare: String,
    /// Run as the table owner after the statement: a boolean, `null` when there was no
    /// effect, `true` when the values are as sent, `false` when the database set them.
    check: String,
    expected: BTreeMap<Actor, Outcome>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Allowed when the statement returns or changes a row (no check).
    Rows,
    /// Allowed when it changed a row and the check says so.
    Write,
    /// The check alone says (a delete that may change other rows).
    Check,
}

/// A model table's name in SQL: `public`'s by default, Storage's as `storage.objects`.
fn qualified(name: &str) -> String {
    if name.contains('.') {
        name.to_owned()
    } else {
        format!("public.{name}")
    }
}

fn key_sql(key: &[(&str, &str)]) -> String {
    key.iter()
        .map(|(c, v)| format!("{c} = {v}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Every cell of the matrix, for the columns the catalog lists.
fn cells(catalog: &BTreeMap<String, Vec<String>>) -> Vec<Cell> {
    let mut out = Vec::new();
    for t in MODEL {
        let columns = &catalog[t.name];
        let all = |f: &dyn Fn(Actor) -> Outcome| -> BTreeMap<Actor, Outcome> {
            ACTORS.iter().map(|&a| (a, f(a))).collect()
        };
        for r in t.rows {
            let key = key_sql(r.key);
            out.push(Cell {
                table: t.name,
                line: format!("read {}", r.what),
                what: format!("select row {}", r.name),
                kind: Kind::Rows,
                sql: format!("select 1 from {} where {key}", qualified(t.name)),
                prepare: String::new(),
                check: String::new(),
                expected: all(&|a| t.expect_read(r, None, a)),
            });
            for c in columns {
                let c = leak(c);
                out.push(Cell {
                    table: t.name,
                    line: format!("read {}: `{c}`", r.what),
                    what: format!("select {c} of row {}", r.name),
                    kind: Kind::Rows,
                    sql: format!("select {c} from {} where {key}", qualified(t.name)),
                    prepare: String::new(),
                    check: String::new(),
                    expected: all(&|a| t.expect_read(r, Some(c), a)),
                });
            }
            for c in columns {
                let c = leak(c);
                let Some(assign) = value(t.name, c, r.name) else {
                    continue;
                };
                // Where the row is afterwards: its key, with any key column changed.
                let moved: Vec<(&str, &str)> = r
                    .key
                    .iter()
                    .map(|(k, v)| {
                        assign
                            .iter()
                            .find(|(a, _)| a == k)
                            .map_or((*k, *v), |(_, nv)| (*k, *nv))
                    })
                    .collect();
                let set = assign
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let same = assign
                    .iter()
                    .map(|(k, v)| format!("{k} is not distinct from {v}"))
                    .collect::<Vec<_>>()
                    .join(" and ");
                out.push(Cell {
                    table: t.name,
                    line: format!("update {}: `{c}`", r.what),
                    what: format!("update {c} of row {}", r.name),
                    kind: Kind::Write,
                    sql: format!("update {} set {set} where {key}", qualified(t.name)),
                    prepare: String::new(),
                    check: format!(
                        "select ({same}) from {} where {}",
                        qualified(t.name),
                        key_sql(&moved)
                    ),
                    expected: all(&|a| t.expect_update(r, c, a)),
                });
            }
            for unqualified in [false, true] {
                let sql = if unqualified {
                    format!("delete from {}", qualified(t.name))
                } else {
                    format!("delete from {} where {key}", qualified(t.name))
                };
                out.push(Cell {
                    table: t.name,
                    line: if unqualified {
                        format!("delete {} (no column in the WHERE clause)", r.what)
                    } else {
                        format!("delete {}", r.what)
                    },
                    what: format!(
                        "delete row {}{}",
                        r.name,
                        if unqualified { " (delete all)" } else { "" }
                    ),
                    kind: Kind::Check,
                    sql,
                    prepare: String::new(),
                    check: format!(
                        "select case when exists (select 1 from {} where {key}) then null else true end",
                        qualified(t.name)
                    ),
                    expected: all(&|a| t.expect_delete(r, unqualified, a)),
                });
            }
        }
        for (what, cond, who) in t.lists {
            out.push(Cell {
                table: t.name,
                line: format!("list {what}"),
                what: format!("list {what}"),
                kind: Kind::Rows,
                sql: format!("select 1 from {} where {cond}", qualified(t.name)),
                prepare: String::new(),
                check: String::new(),
                expected: all(&|a| {
                    if a == Service || may(who, a) {
                        Outcome::Allowed
                    } else {
                        Outcome::Denied
                    }
                }),
            });
        }
        for ins in t.inserts {
            let find = key_sql(ins.values);
            let mut variants: Vec<(Option<&'static str>, Assignments)> = vec![(None, Vec::new())];
            for c in columns {
                let c = leak(c);
                if ins.values.iter().any(|(k, _)| *k == c) {
                    continue;
                }
                if let Some(assign) = value(t.name, c, ins.what) {
                    variants.push((Some(c), assign));
                }
            }
            for (extra, assign) in variants {
                let mut cols: Vec<&str> = ins.values.iter().map(|(k, _)| *k).collect();
                let mut vals: Vec<&str> = ins.values.iter().map(|(_, v)| *v).collect();
                for (k, v) in &assign {
                    cols.push(k);
                    vals.push(v);
                }
                let check = match extra {
                    None => format!("select true from {} where {find}", qualified(t.name)),
                    Some(_) => {
                        let same = assign
                            .iter()
                            .map(|(k, v)| format!("{k} is not distinct from {v}"))
                            .collect::<Vec<_>>()
                            .join(" and ");
                        format!("select ({same}) from {} where {find}", qualified(t.name))
                    }
                };
                out.push(Cell {
                    table: t.name,
                    line: match extra {
                        None => format!("insert {}", ins.what),
                        Some(c) => format!("insert {}, sending `{c}`", ins.what),
                    },
                    what: format!(
                        "insert {}{}",
                        ins.what,
                        extra.map_or(String::new(), |c| format!(" with {c}"))
                    ),
                    kind: Kind::Write,
                    sql: format!(
                        "insert into {} ({}) values ({})",
                        qualified(t.name),
                        cols.join(", "),
                        vals.join(", ")
                    ),
                    prepare: ins.prepare.to_owned(),
                    check,
                    expected: all(&|a| t.expect_insert(ins, extra, a)),
                });
            }
        }
    }
    for f in FUNCTIONS {
        for (what, sql, who) in f.calls {
            out.push(Cell {
                table: f.name,
                line: format!("call `{}`: {what}", f.name),
                what: format!("call {}: {what}", f.name),
                kind: Kind::Rows,
                sql: (*sql).to_owned(),
                prepare: String::new(),
                check: String::new(),
                expected: ACTORS
                    .iter()
                    .map(|&a| {
                        let o = if may(who, a) {
                            Outcome::Allowed
                        } else {
                            Outcome::Denied
                        };
                        (a, o)
                    })
                    .collect(),
            });
        }
    }
    out
}

/// The fixture's ids: fixed, so the DM's key (and PERMISSIONS.md) never changes.
fn ids() -> BTreeMap<&'static str, String> {
    [
        "newcomer",
        "stranger",
        "guest",
        "member",
        "moderator",
        "private_member",
        "dm_member",
        "admin",
        "owner",
        "partner_owner",
        "bot",
        "peer",
        "partner_peer",
        "outsider",
        "home",
        "partner",
        "other",
        "general",
        "lobby",
        "private",
        "dm",
        "shared",
        "partner_general",
        "elsewhere",
        "general_msg",
        "general_reply",
        "lobby_msg",
        "private_msg",
        "dm_msg",
        "shared_msg",
        "elsewhere_msg",
        "general_file",
        "private_file",
        "dm_file",
        "deactivated",
        // An account without a profile that no actor is.
        "spare_account",
        "general_object",
        "private_object",
        "dm_object",
        "shared_object",
        "foreign_object",
        "misfiled_object",
    ]
    .iter()
    .enumerate()
    .map(|(i, n)| (*n, format!("00000000-0000-4000-8000-{:012x}", i + 1)))
    .collect()
}

fn fill(template: &str, ids: &BTreeMap<&'static str, String>, me: Option<&str>) -> String {
    let mut s = template.replace(
        "{me}",
        &me.map_or("null::uuid".to_owned(), |m| format!("'{}'::uuid", ids[m])),
    );
    // Longest names first: {general_msg} before {general}.
    let mut names: Vec<_> = ids.iter().collect();
    names.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (name, id) in names {
        s = s.replace(&format!("{{{name}}}"), &format!("'{id}'::uuid"));
    }
    assert!(
        !s.contains('{') || s.contains("'{"),
        "unfilled placeholder in {s}"
    );
    s
}

async fn fixture(c: &mut PgConnection, ids: &BTreeMap<&'static str, String>) {
    let people = [
        "newcomer",
        "stranger",
        "guest",
        "member",
        "moderator",
        "private_member",
        "dm_member",
        "admin",
        "owner",
        "partner_owner",
        "bot",
        "peer",
        "partner_peer",
        "outsider",
        "deactivated",
        "spare_account",
    ];
    for p in people {
        sqlx::query(
            "insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                confirmation_token, recovery_token, email_change_token_new, email_change,
                raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
             values ('00000000-0000-0000-0000-000000000000', $1::uuid, 'authenticated', 'authenticated', $2, '', now(),
                '', '', '', '', '{\"provider\":\"email\",\"providers\":[\"email\"]}', '{}', now(), now())",
        )
        .bind(&ids[p])
        .bind(format!("{}@example.com", p.replace('_', "-")))
        .execute(&mut *c)
        .await
        .unwrap();
        if p != "newcomer" && p != "spare_account" {
            sqlx::query("insert into public.users (id, username, name, is_bot) values ($1::uuid, $2, $2, $3)")
                .bind(&ids[p])
                .bind(p.replace('_', "-"))
                .bind(p == "bot")
                .execute(&mut *c)
                .await
                .unwrap();
        }
    }
    let mut dm = [ids["member"].clone(), ids["dm_member"].clone()];
    dm.sort();
    let setup = format!(
        r#"
        insert into workspaces (id, slug, name) values ({{home}}, 'home', 'Home'),
            ({{partner}}, 'partner', 'Partner'), ({{other}}, 'other', 'Other');
        insert into workspace_members (workspace_id, user_id, role) values
            ({{home}}, {{owner}}, 'owner'), ({{home}}, {{admin}}, 'admin'), ({{home}}, {{member}}, 'member'),
            ({{home}}, {{moderator}}, 'member'), ({{home}}, {{private_member}}, 'member'),
            ({{home}}, {{dm_member}}, 'member'), ({{home}}, {{guest}}, 'guest'), ({{home}}, {{bot}}, 'member'),
            ({{home}}, {{peer}}, 'member'), ({{home}}, {{deactivated}}, 'member'),
            ({{partner}}, {{partner_owner}}, 'owner'), ({{partner}}, {{partner_peer}}, 'member'),
            ({{other}}, {{outsider}}, 'owner');
        insert into channels (id, workspace_id, name, kind) values
            ({{general}}, {{home}}, 'general', 'public'), ({{lobby}}, {{home}}, 'lobby', 'public'),
            ({{private}}, {{home}}, 'private', 'private'), ({{shared}}, {{home}}, 'shared', 'public'),
            ({{partner_general}}, {{partner}}, 'general', 'public'), ({{elsewhere}}, {{other}}, 'elsewhere', 'public');
        insert into channels (id, workspace_id, kind, dm_key) values ({{dm}}, {{home}}, 'dm', '{dm0},{dm1}');
        insert into shared_channels (channel_id, workspace_id) values ({{shared}}, {{partner}});
        insert into members (channel_id, user_id, role) values
            ({{general}}, {{owner}}, 'member'), ({{general}}, {{admin}}, 'member'), ({{general}}, {{member}}, 'member'),
            ({{general}}, {{moderator}}, 'moderator'), ({{general}}, {{private_member}}, 'member'),
            ({{general}}, {{dm_member}}, 'member'), ({{general}}, {{guest}}, 'member'), ({{general}}, {{bot}}, 'member'),
            ({{general}}, {{peer}}, 'member'), ({{general}}, {{deactivated}}, 'member'),
            ({{lobby}}, {{moderator}}, 'owner'),
            ({{private}}, {{private_member}}, 'member'), ({{private}}, {{moderator}}, 'moderator'),
            ({{dm}}, {{member}}, 'member'), ({{dm}}, {{dm_member}}, 'member'),
            ({{shared}}, {{member}}, 'member'), ({{shared}}, {{moderator}}, 'moderator'),
            ({{shared}}, {{partner_owner}}, 'member'),
            ({{partner_general}}, {{partner_owner}}, 'owner'), ({{partner_general}}, {{partner_peer}}, 'member'),
            ({{elsewhere}}, {{outsider}}, 'owner');
        insert into chat (id, channel_id, user_id, message) values
            ({{general_msg}}, {{general}}, {{member}}, '{{"text":"hello @private","mentions":["{pm}"]}}'),
            ({{lobby_msg}}, {{lobby}}, {{moderator}}, '{{"text":"lobby"}}'),
            ({{private_msg}}, {{private}}, {{private_member}}, '{{"text":"private"}}'),
            ({{dm_msg}}, {{dm}}, {{dm_member}}, '{{"text":"dm"}}'),
            ({{shared_msg}}, {{shared}}, {{partner_owner}}, '{{"text":"shared"}}'),
            ({{elsewhere_msg}}, {{elsewhere}}, {{outsider}}, '{{"text":"elsewhere"}}');
        insert into chat (id, channel_id, user_id, parent_id, message) values
            ({{general_reply}}, {{general}}, {{dm_member}}, {{general_msg}}, '{{"text":"reply"}}');
        insert into emojis (chat_id, user_id, emoji_uni_code) values ({{general_msg}}, {{member}}, '👀'),
            ({{private_msg}}, {{private_member}}, '👀'), ({{dm_msg}}, {{dm_member}}, '👀');
        insert into attachments (id, message_id, bucket_id, object_path, name, size_bytes) values
            ({{general_file}}, {{general_msg}}, 'files', 'a/general.pdf', 'general.pdf', 1),
            ({{private_file}}, {{private_msg}}, 'files', 'a/private.pdf', 'private.pdf', 1),
            ({{dm_file}}, {{dm_msg}}, 'files', 'a/dm.pdf', 'dm.pdf', 1);
        insert into read_receipts (message_id, user_id) values ({{general_msg}}, {{member}}),
            ({{private_msg}}, {{private_member}}), ({{dm_msg}}, {{dm_member}});
        insert into user_status (user_id, presence) values ({{member}}, 'online'),
            ({{partner_owner}}, 'online'), ({{outsider}}, 'online');
        insert into storage.buckets (id, name) values ('files', 'files'), ('foreign', 'foreign');
        insert into chatctl.storage_buckets (bucket_id) values ('files');
        insert into storage.objects (id, bucket_id, name, owner) values
            ({{general_object}}, 'files', {{home}}::text || '/' || {{general}}::text || '/' || {{member}}::text || '/general.pdf', {{member}}),
            ({{private_object}}, 'files', {{home}}::text || '/' || {{private}}::text || '/' || {{private_member}}::text || '/private.pdf', {{private_member}}),
            ({{dm_object}}, 'files', {{home}}::text || '/' || {{dm}}::text || '/' || {{dm_member}}::text || '/dm.pdf', {{dm_member}}),
            ({{shared_object}}, 'files', {{home}}::text || '/' || {{shared}}::text || '/' || {{partner_owner}}::text || '/shared.pdf', {{partner_owner}}),
            ({{foreign_object}}, 'foreign', {{home}}::text || '/' || {{general}}::text || '/' || {{member}}::text || '/foreign.pdf', {{member}}),
            ({{misfiled_object}}, 'files', {{partner}}::text || '/' || {{general}}::text || '/' || {{member}}::text || '/misfiled.pdf', {{member}});
        update users set deactivated_at = now() where id = {{deactivated}};
        update auth.users set banned_until = now() + interval '100 years' where id = {{deactivated}};
        "#,
        dm0 = dm[0],
        dm1 = dm[1],
        pm = ids["private_member"],
    );
    sqlx::raw_sql(&fill(&setup, ids, None))
        .execute(&mut *c)
        .await
        .unwrap();
}

/// Runs one statement as an actor inside a subtransaction that is always rolled back, and
/// says what came of it: `allowed`, `overridden`, `denied: why` or `error: ...`.
const CELL_FUNCTION: &str = r#"
create schema chatctl_test;
create function chatctl_test.cell(actor_role text, claims text, kind text, prepare text, stmt text, check_sql text)
returns text language plpgsql as $$
declare
    n bigint;
    ok boolean;
    outcome text;
begin
    begin
        if prepare <> '' then
            execute prepare;
        end if;
        if kind = 'check' then
            execute replace(check_sql, 'then null else true', 'then true else null') into ok;
            if ok is null then
                raise exception using errcode = 'P0001', message = 'OUTCOME:denied: no such row';
            end if;
        end if;
        perform set_config('request.jwt.claims', claims, true);
        perform set_config('role', actor_role, true);
        execute stmt;
        get diagnostics n = row_count;
        set constraints all immediate;
        perform set_config('role', 'none', true);
        if kind = 'rows' then
            outcome := case when n > 0 then 'allowed' else 'denied: no rows' end;
        elsif kind = 'write' and n = 0 then
            outcome := 'denied: no effect';
        else
            execute check_sql into ok;
            outcome := case when ok is null then 'denied: no effect' when ok then 'allowed' else 'overridden' end;
        end if;
        raise exception using errcode = 'P0001', message = 'OUTCOME:' || outcome;
    exception when others then
        if sqlerrm like 'OUTCOME:%' then
            return substr(sqlerrm, 9);
        elsif sqlstate = '42501' or sqlstate like '23%' then
            return 'denied: ' || sqlerrm;
        end if;
        return 'error: ' || sqlstate || ' ' || sqlerrm;
    end;
end
$$;
"#;

fn claims(actor: Actor, ids: &BTreeMap<&'static str, String>) -> String {
    match actor.user() {
        None => r#"{"role":"anon"}"#.to_owned(),
        // The service key names no user.
        Some(_) if actor == Service => r#"{"role":"service_role"}"#.to_owned(),
        Some(u) => serde_json::json!({
            "sub": ids[u],
            "role": actor.role(),
            "aud": "authenticated",
        })
        .to_string(),
    }
}

/// The catalog: every table in `public` with its columns, Storage's objects and buckets,
/// and every function in `public`.
async fn catalog(c: &mut PgConnection) -> (BTreeMap<String, Vec<String>>, BTreeSet<String>) {
    let cols: Vec<(String, String)> = sqlx::query_as(
        "select case when c.relnamespace = 'public'::regnamespace then c.relname::text
                     else 'storage.' || c.relname end, a.attname::text
           from pg_class c
           join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
          where (c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f'))
             or (c.relnamespace = 'storage'::regnamespace and c.relname in ('objects', 'buckets'))
          order by c.relnamespace, c.relname, a.attnum",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (t, col) in cols {
        tables.entry(t).or_default().push(col);
    }
    let functions: BTreeSet<String> = sqlx::query_scalar(
        "select proname::text from pg_proc where pronamespace = 'public'::regnamespace",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap()
    .into_iter()
    .collect();
    (tables, functions)
}

/// The model, rendered: one table per table (lines of identical outcomes merged).
fn render(cells: &[Cell]) -> String {
    let mut s = String::from(PERMISSIONS_HEAD);
    for a in ACTORS {
        let _ = writeln!(s, "| `{}` | {} |", a.short(), a.describe());
    }
    let mut tables: Vec<&str> = Vec::new();
    for c in cells {
        if !tables.contains(&c.table) {
            tables.push(c.table);
        }
    }
    for t in tables {
        let kind = if FUNCTIONS.iter().any(|f| f.name == t) {
            "function"
        } else {
            "table"
        };
        let _ = writeln!(s, "\n### {kind} `{t}`\n");
        let header: Vec<&str> = ACTORS.iter().map(|a| a.short()).collect();
        let _ = writeln!(s, "| | {} |", header.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(ACTORS.len()));
        // Merge lines: "read X: `a`" lines that match "read X" are left out; update and
        // insert lines with the same outcomes are joined.
        let mut lines: Vec<(String, Vec<Outcome>)> = Vec::new();
        let mut row_reads: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
        for c in cells.iter().filter(|c| c.table == t) {
            let outcomes: Vec<Outcome> = ACTORS.iter().map(|a| c.expected[a]).collect();
            if let Some(rest) = c.line.strip_prefix("read ") {
                if let Some((row, _col)) = rest.split_once(": `") {
                    if row_reads.get(row) == Some(&outcomes) {
                        continue;
                    }
                } else {
                    row_reads.insert(rest.to_owned(), outcomes.clone());
                }
            }
            let (stem, column) = match c.line.rsplit_once(", sending `") {
                Some((stem, col)) => (format!("{stem}, sending"), Some(col.trim_end_matches('`'))),
                None => match c.line.rsplit_once(": `") {
                    Some((stem, col)) => (format!("{stem}:"), Some(col.trim_end_matches('`'))),
                    None => (c.line.clone(), None),
                },
            };
            if let Some(col) = column
                && let Some(last) = lines
                    .iter_mut()
                    .rev()
                    .find(|(l, o)| l.starts_with(&stem) && *o == outcomes)
            {
                last.0.push_str(&format!(", `{col}`"));
                continue;
            }
            let line = match column {
                Some(col) => format!("{stem} `{col}`"),
                None => stem,
            };
            lines.push((line, outcomes));
        }
        for (line, outcomes) in lines {
            let cells: Vec<&str> = outcomes.iter().map(|o| o.symbol()).collect();
            let _ = writeln!(s, "| {line} | {} |", cells.join(" | "));
        }
    }
    s
}

const PERMISSIONS_HEAD: &str = "# Permissions

The web app talks to the database with the signed-in user's token (PostgREST, Realtime), so
these rules are the product's security boundary. They are held by the database (grants,
row level security policies and triggers in `migrations/0009_authorization.up.sql`,
`0010_users.up.sql` for deactivated people, `0014_user_activity.up.sql` for the
per-channel counters a profile shows, and `0015_storage_policies.up.sql` for files in
Supabase Storage, which runs every client request as the caller), for every client alike;
`chatctl` and other operators' tools use the service role.

This page is generated from the model in `tests/it/rls.rs`, which checks every cell below
against a real database: every table and function in `public` (read from the catalog) and
Storage's `objects` and `buckets`, every column, every actor. Anything the model does not grant is expected to be denied, so a
new table or column fails the test until it is given its rows here. To change the model,
edit it and run `CHATCTL_BLESS=1 cargo test rls` to rewrite this page.

- ✓ allowed, with the values sent.
- ~ allowed, but the database sets the value itself (`updated_at`, a read receipt's time,
  an archive time, a profile's email, a read position clamped to now).
- · denied: refused (privilege, policy, invariant) or without effect.

Rules the cells show:

- Identity is the verified auth user: `users.email` is always the auth user's verified
  address (set by the database, whatever anyone sends); `is_bot`, ids, timestamps,
  counters, external ids and `created_by` are never written by clients.
- Counters kept by the database (`user_activity`, like `mentions`) are read as their
  channel's messages are, and written by no client.
- Files (Storage objects of chatctl's buckets) are read and listed as their channel's
  messages are; uploaded by whoever may post there, into their own folder only, as their
  own; changed by their uploader; deleted by their uploader, the channel's moderators and,
  in a public channel, the workspace's owners and admins. Buckets are listed by no client.
- Reads follow membership: public channels are read by the non-guest members of their
  workspace and of the workspaces they are shared with; private channels and DMs by their
  members only. E-mail addresses are read through `user_emails`, by the person themselves
  and people of the same workspace, never across a shared channel.
- Deleting needs reading; `delete from t` with no column in the WHERE clause reaches only
  the rows the actor may delete one by one.
- A workspace keeps its owner (for every writer, operators included); admins never change
  or remove an owner, nor make one.
- A channel's members come from its workspace or the workspaces it is shared with; a DM's
  people are fixed at creation (a new set of people is a new DM) and none moderates it.

The fixture: workspaces `home`, `partner` and an unrelated one; #general, #lobby, #shared
(public; #shared is shared with partner), #private and a DM in home; a message, reaction,
file and read receipt in each; in chatctl's bucket `files`, an object in the folder
(`<workspace>/<channel>/<uploader>/…`) of #general, #private, the DM and #shared, one laid
out as #general's in a bucket chatctl does not own, and one of #general filed under the
partner workspace. The actors (`service` acts for `peer`, a plain member of home
with no rows of its own):

| actor | who |
|---|---|
";

#[tokio::test]
async fn every_cell_of_the_permission_model_holds() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let ids = ids();
    fixture(&mut c, &ids).await;
    sqlx::raw_sql(CELL_FUNCTION).execute(&mut c).await.unwrap();

    // Every table and column of `public` is in the model, and nothing else.
    let (tables, functions) = catalog(&mut c).await;
    let mut problems = Vec::new();
    for (t, cols) in &tables {
        match MODEL.iter().find(|m| m.name == t) {
            None => problems.push(format!(
                "table `{t}` is not in the permission model (tests/it/rls.rs): add it, with who may read and write each column"
            )),
            Some(m) if m.columns != cols.as_slice() => problems.push(format!(
                "the columns of `{t}` are {cols:?} but the permission model lists {:?}: give every new column its rules",
                m.columns
            )),
            Some(_) => {}
        }
    }
    for m in MODEL {
        if !tables.contains_key(m.name) {
            problems.push(format!(
                "the model has a table `{}` the database has not",
                m.name
            ));
        }
    }
    for f in &functions {
        if !FUNCTIONS.iter().any(|m| m.name == f) {
            problems.push(format!(
                "function `public.{f}` is not in the permission model: add who may call it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let cells = cells(&tables);
    let mut failures = Vec::new();
    let mut count = 0usize;
    for cell in &cells {
        let (mut want, mut got_all, mut errors) = (String::new(), String::new(), Vec::new());
        for &actor in &ACTORS {
            count += 1;
            let kind = match cell.kind {
                Kind::Rows => "rows",
                Kind::Write => "write",
                Kind::Check => "check",
            };
            let me = actor.user();
            let got: String =
                sqlx::query_scalar("select chatctl_test.cell($1, $2, $3, $4, $5, $6)")
                    .bind(actor.role())
                    .bind(claims(actor, &ids))
                    .bind(kind)
                    .bind(fill(&cell.prepare, &ids, me))
                    .bind(fill(&cell.sql, &ids, me))
                    .bind(fill(&cell.check, &ids, me))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
            let outcome = match got.as_str() {
                "allowed" => Some(Outcome::Allowed),
                "overridden" => Some(Outcome::Overridden),
                g if g.starts_with("denied") => Some(Outcome::Denied),
                _ => None,
            };
            let expected = cell.expected[&actor];
            want.push_str(expected.symbol());
            got_all.push_str(outcome.map_or("!", Outcome::symbol));
            if outcome != Some(expected) {
                errors.push(format!("{}: {got}", actor.short()));
            }
        }
        if !errors.is_empty() {
            failures.push(format!(
                "{} {}\n    expected {want}\n    got      {got_all}\n    {}\n    {}",
                cell.table,
                cell.what,
                fill(&cell.sql, &ids, Some("member")),
                errors.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cells differ from the permission model (actors: {}):\n{}",
        failures.len(),
        ACTORS.map(Actor::short).join(" "),
        failures.join("\n")
    );

    // PERMISSIONS.md is the model, rendered.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("PERMISSIONS.md");
    let rendered = render(&cells);
    if chatctl::config::Env::from_process()
        .get("CHATCTL_BLESS")
        .is_some()
    {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "PERMISSIONS.md is not the permission model: run `CHATCTL_BLESS=1 cargo test rls` and review the diff"
    );
}
