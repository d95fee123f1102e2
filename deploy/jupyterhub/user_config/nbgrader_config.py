"""nbgrader settings of every server the course's hub starts (deploy/jupyterhub/jupyterhub_config.py puts this
folder on JUPYTER_CONFIG_PATH): the shared exchange, the course, and this user's student id."""
import os

c = get_config()  # noqa: F821 - provided by nbgrader
c.CourseDirectory.course_id = "coursekit"
c.Exchange.root = os.environ.get("COURSEKIT_EXCHANGE", "/srv/nbgrader/exchange")
if os.environ.get("NBGRADER_STUDENT_ID"):  # set by the hub's pre-spawn hook: one OS user serves many students
    c.CourseDirectory.student_id = os.environ["NBGRADER_STUDENT_ID"]
# submissions carry coursekit_identity.json, signed with the key the hub gave this server (coursekit.grading.identity)
c.ExchangeFactory.submit = "coursekit.grading.identity.IdentitySubmit"
