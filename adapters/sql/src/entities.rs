//! SeaORM entities, one module per table; mapped to domain types in `db`.

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub first_name: String,
        pub last_name: String,
        /// Lower-cased; unique.
        pub email: String,
        pub password_hash: String,
        pub city: String,
        /// `city` lower-cased, for case-insensitive filters.
        pub city_key: String,
        pub country: String,
        pub created_at: DateTimeUtc,
        /// The address as typed (NFKC), where mail goes; `email` is its
        /// case-folded key. Older accounts have none: mail goes to `email`.
        pub email_address: Option<String>,
        /// When the address was verified (its link opened).
        pub email_verified_at: Option<DateTimeUtc>,
        /// The keyed pseudonym of the network the sign-up came from.
        pub signup_network: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod video {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "videos")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub owner_id: i64,
        pub title: String,
        pub status: String,
        pub task_id: String,
        pub original_key: String,
        pub processed_key: Option<String>,
        pub uploaded_at: DateTimeUtc,
        pub processed_at: Option<DateTimeUtc>,
        pub failure_reason: Option<String>,
        pub votes: i64,
        /// The owner's `city_key`, set when the video becomes public (for
        /// the city listing's index).
        pub city_key: Option<String>,
        /// Share of processing done, 0–100, while `processing`.
        pub progress: Option<i16>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod vote {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "votes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub video_id: i64,
        pub created_at: DateTimeUtc,
        /// The keyed pseudonym of the network the vote came from.
        pub network: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod job {
    use sea_orm::entity::prelude::*;

    /// A processing job: the queue itself for the database queue, the
    /// outbox for an external queue. Times are Unix milliseconds.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "jobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub task_id: String,
        pub video_id: i64,
        /// `queued` or `dead`.
        pub state: String,
        pub visible_at: i64,
        pub receive_count: i32,
        pub receipt: Option<String>,
        pub last_error: Option<String>,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
