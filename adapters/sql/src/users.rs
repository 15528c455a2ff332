//! [`SeaOrmUserRepository`]: the accounts.

use anb_domain::ports::{UserRepository, UserRepositoryError};
use anb_domain::{BackendError, Email, MailKind, NewUser, PasswordHash, User, UserId};
use async_trait::async_trait;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait};

use crate::entities::user;
use crate::{Database, db_error, is_unique_violation, millis};

/// Stores accounts with SeaORM.
#[derive(Clone, Debug)]
pub struct SeaOrmUserRepository {
    pub(crate) db: Database,
}

fn to_user(m: user::Model) -> Result<User, BackendError> {
    Ok(User {
        id: UserId(m.id),
        email: Email::parse(m.email_address.as_deref().unwrap_or(&m.email))
            .map_err(|_| BackendError::internal(format!("stored e-mail of user {} is invalid", m.id)))?,
        first_name: m.first_name,
        last_name: m.last_name,
        password_hash: PasswordHash(m.password_hash),
        city: m.city,
        country: m.country,
        created_at: m.created_at,
        email_verified: m.email_verified_at.is_some(),
    })
}

#[async_trait]
impl UserRepository for SeaOrmUserRepository {
    async fn create(&self, new: NewUser) -> Result<User, UserRepositoryError> {
        let model = user::ActiveModel {
            first_name: Set(new.first_name),
            last_name: Set(new.last_name),
            email: Set(new.email.as_str().to_owned()),
            email_address: Set(Some(new.email.address().to_owned())),
            password_hash: Set(new.password_hash.0),
            city_key: Set(anb_domain::user::city_key(&new.city)),
            city: Set(new.city),
            country: Set(new.country),
            created_at: Set(new.created_at),
            signup_network: Set(new.signup_network.map(|n| n.0)),
            email_verified_at: Set(None),
            ..Default::default()
        };
        let txn = self.db.connection().begin().await.map_err(|e| db_error(&e))?;
        let created = match model.insert(&txn).await {
            Ok(m) => m,
            Err(e) if is_unique_violation(&e) => return Err(UserRepositoryError::DuplicateEmail),
            Err(e) => return Err(db_error(&e).into()),
        };
        // The verification message, in the same transaction (the outbox).
        let now = millis(new.created_at);
        let queue = "INSERT INTO mail_outbox (user_id, kind, due_ms, attempts, created_ms) VALUES ($1, $2, $3, 0, $4)";
        let values = vec![created.id.into(), MailKind::Verification.as_str().into(), now.into(), now.into()];
        txn.execute(self.db.statement(queue, values)).await.map_err(|e| db_error(&e))?;
        txn.commit().await.map_err(|e| db_error(&e))?;
        Ok(to_user(created)?)
    }

    async fn by_email(&self, email: &Email) -> Result<Option<User>, UserRepositoryError> {
        let found = user::Entity::find()
            .filter(user::Column::Email.eq(email.as_str()))
            .one(self.db.connection())
            .await
            .map_err(|e| db_error(&e))?;
        Ok(found.map(to_user).transpose()?)
    }

    async fn by_id(&self, id: UserId) -> Result<Option<User>, UserRepositoryError> {
        let found = user::Entity::find_by_id(id.0).one(self.db.connection()).await.map_err(|e| db_error(&e))?;
        Ok(found.map(to_user).transpose()?)
    }
}
